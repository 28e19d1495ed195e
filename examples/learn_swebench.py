"""Learn a repair-step allocation from the OSCA release and judge it honestly on held-out problems.

    .venv/bin/python examples/learn_swebench.py [path/to/swebench_agentless.json]

Shows the library API behind `osca curve`: a seeded split, learning, the certified gap, unbiased test pass@C
against the best single configuration, and a cost-weighted budget (gpt4o samples priced 10x the others).
"""

from __future__ import annotations

import sys

import osca
from osca.evaluate import best_pure, bootstrap_ci, expected_pass

path = sys.argv[1] if len(sys.argv) > 1 else "../shared/data/osca/swebench_agentless.json"
split = osca.load_counts(path).pool().split(0.5, seed=0)
budget = 8

res = osca.learn_allocation(split.train, budget, seed=0)
print(f"learned on {split.train.n_problems} problems: {dict(res.allocation)}")
print(f"train f = {res.objective:.4f}, certified optimum <= {res.upper_bound:.4f} (gap {res.gap:.1e})")

learned = expected_pass(split.test, res.allocation)
best = best_pure(split.train, budget)
pure = expected_pass(split.test, osca.Allocation({best: budget}))
lo, hi = bootstrap_ci([learned.per_problem - pure.per_problem])
print(f"test pass@{budget}: osca {learned.value:.4f} vs best pure {best} {pure.value:.4f} "
      f"(difference 95% CI {lo:+.4f} .. {hi:+.4f})")

priced = [osca.SamplingConfig(name=n, cost=10.0 if n.startswith("gpt4o") else 1.0) for n in split.train.names]
cheap = osca.learn_allocation(split.train.with_configs(priced), 40.0, seed=0)
print(f"budget 40 cost units, gpt4o at 10x: {dict(cheap.allocation)} spends {cheap.spent:g}, "
      f"test pass {expected_pass(split.test.with_configs(priced), cheap.allocation).value:.4f}")
