"""The OSCA paper's Agentless experiment, replayed: learn the repair step's allocation from the released counts
and write it as the repair node's configuration and allocation files.

    .venv/bin/python examples/agentless_allocation.py [COUNTS] [--budget 16] [--out runs/agentless_allocation]

The 22 released configurations are {gpt4o, deepseek, qwen} x temperature {0.4, 0.8, 1.2, 1.6} x location set
{loc_merged_0-1, loc_merged_2-3} ("_2-3" in the name). Each becomes a `SamplingConfig` whose `prompt_variant`
is its location set, which is what the Agentless graph's repair node reads. Then:

    osca agentless run --configs OUT/repair_configs.json --allocation OUT/repair_allocation.json ...
"""

from __future__ import annotations

import argparse
import json
import re
from pathlib import Path

import osca
from osca.evaluate import expected_pass

# LiteLLM names for the paper's models; edit to match your deployment (qwen: a vLLM endpoint, with
# HOSTED_VLLM_API_BASE set).
MODELS = {"gpt4o": "openai/gpt-4o-2024-05-13", "deepseek": "deepseek/deepseek-coder",
          "qwen": "hosted_vllm/Qwen/Qwen2.5-72B-Instruct"}
DEFAULT = "gpt4o_0.8"  # what Agentless itself samples from


def repair_config(name: str) -> osca.SamplingConfig:
    """`gpt4o_0.8_2-3` -> gpt-4o at T=0.8 on location set loc_merged_2-3 (no suffix: loc_merged_0-1)."""
    m = re.fullmatch(r"(gpt4o|deepseek|qwen)_([\d.]+)(_2-3)?", name)
    if m is None:
        raise osca.DataError(f"unexpected configuration name {name!r} (expected e.g. gpt4o_0.8 or qwen_1.2_2-3)")
    return osca.SamplingConfig(name=name, model=MODELS[m[1]], temperature=float(m[2]),
                               prompt_variant="loc_merged_2-3" if m[3] else "loc_merged_0-1")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("counts", nargs="?", default="../shared/data/osca/swebench_agentless.json")
    ap.add_argument("--budget", type=int, default=16)
    ap.add_argument("--out", type=Path, default=Path("runs/agentless_allocation"))
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()

    split = osca.load_counts(args.counts)
    configs = [repair_config(n) for n in split.train.names]
    res = osca.learn_allocation(split.train, args.budget, seed=args.seed)

    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "repair_configs.json").write_text(
        json.dumps([c.model_dump(exclude_defaults=True) for c in configs], indent=2) + "\n")
    res.save(args.out / "repair_allocation.json")

    print(f"repair allocation at C = {args.budget}, learned on {split.train.n_problems} instances "
          f"(certified gap {res.gap:.1e}):")
    by_name = {c.name: c for c in configs}
    for name, k in sorted(res.allocation.items(), key=lambda kv: (-kv[1], kv[0])):
        c = by_name[name]
        print(f"  {k:3d} x {name:16s} {c.model:40s} T={c.temperature:<4} {c.prompt_variant}")

    default = osca.Allocation({DEFAULT: args.budget})
    print(f"\nexpected resolve rate (pass@{args.budget}), in-sample as in the paper:")
    print(f"  osca allocation    {expected_pass(split.test, res.allocation).value:.4f}")
    print(f"  {DEFAULT} x {args.budget:<5d}  {expected_pass(split.test, default).value:.4f}")
    held_out = split.pool().split(0.3, seed=args.seed)
    honest = osca.learn_allocation(held_out.train, args.budget, seed=args.seed)
    print(f"held out (learned on a seeded 30% of instances, scored on the other 70%):")
    print(f"  osca allocation    {expected_pass(held_out.test, honest.allocation).value:.4f}")
    print(f"  {DEFAULT} x {args.budget:<5d}  {expected_pass(held_out.test, default).value:.4f}")
    print(f"\nwrote {args.out / 'repair_configs.json'} and {args.out / 'repair_allocation.json'}; run with\n"
          f"  osca agentless run --configs {args.out / 'repair_configs.json'} "
          f"--allocation {args.out / 'repair_allocation.json'} --model {MODELS['gpt4o']}")


if __name__ == "__main__":
    try:
        main()
    except osca.OscaError as e:
        raise SystemExit(f"error: {e}") from None
