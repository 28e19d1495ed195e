"""Local provider: n samples of one long prompt in one call (the prompt is evaluated once and every sample
continues from its KV cache) vs n separate calls (each evaluates the whole prompt again).

Both ways draw the same n samples (same seeds) of the same prompt, alternating, several rounds; the script prints
the median wall times and the ratio one-call / separate-calls. With a prompt much longer than the answers the
ratio approaches (prompt + n answers) / (n prompts + n answers); target: well under 1 for n >= 2 (e.g. <= 0.5
for n = 4 with a 2,000-token prompt and 16-token answers).

    python benchmarks/bench_local_prompt_reuse.py [--model smollm2-135m] [--n 4] [--words 1500] [--rounds 3]
"""

from __future__ import annotations

import argparse
import os
import statistics
import time

os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")

from osca.providers.local import register  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", default="smollm2-135m")
    ap.add_argument("--n", type=int, default=4)
    ap.add_argument("--words", type=int, default=1500, help="length of the prompt in words")
    ap.add_argument("--max-tokens", type=int, default=16)
    ap.add_argument("--rounds", type=int, default=3)
    args = ap.parse_args()

    register()
    import litellm

    text = " ".join(f"item{i}" for i in range(args.words))
    kwargs = dict(model=f"local/{args.model}", messages=[{"role": "user", "content": f"Summarize: {text}"}],
                  max_tokens=args.max_tokens, temperature=0.8)
    litellm.completion(**kwargs, seed=0)  # load the model

    def one_call() -> float:
        start = time.perf_counter()
        litellm.completion(**kwargs, n=args.n, seed=1)
        return time.perf_counter() - start

    def separate_calls() -> float:
        start = time.perf_counter()
        for i in range(args.n):
            litellm.completion(**kwargs, seed=1 + i)
        return time.perf_counter() - start

    together, apart = [], []
    for _ in range(args.rounds):
        together.append(one_call())
        apart.append(separate_calls())
    t, a = statistics.median(together), statistics.median(apart)
    prompt = litellm.completion(**kwargs, seed=0).usage.prompt_tokens
    print(f"{args.model}: prompt {prompt} tokens, n={args.n}, answers <= {args.max_tokens} tokens")
    print(f"one call with n={args.n}: {t:.2f}s   {args.n} separate calls: {a:.2f}s   ratio {t / a:.2f}x")


if __name__ == "__main__":
    main()
