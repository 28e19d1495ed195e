"""Sampler overhead: N candidates through raw `litellm.acompletion` vs through `AllocatedSampler`.

A local OpenAI-compatible HTTP stub on 127.0.0.1 answers every request after a fixed latency. Both ways send
the same N single-sample requests with the same concurrency, in one event loop, alternating, several rounds; the
script prints the wall times and the ratio sampler / raw (target <= 1.05x), and the process CPU time each way
used (stub server included, the same for both): on a loaded machine the wall times swing by 2x from round to
round, the CPU time says what the sampler itself adds. That loop is osca's LiteLLM loop:
LiteLLM binds its logging worker to one loop, and alternating two loops in one process would make both ways
pay for moving it back and forth, which a program using either way alone never does.

    python benchmarks/bench_sampler.py [--n 64] [--concurrency 16] [--latency 0.1] [--rounds 3]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")

from osca import AllocatedSampler, Allocation, SamplingConfig  # noqa: E402
from osca._litellm import litellm, on_litellm_loop  # noqa: E402


def stub_server(latency: float) -> ThreadingHTTPServer:
    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:  # noqa: N802
            body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
            time.sleep(latency)
            n = int(body.get("n") or 1)
            payload = json.dumps({
                "id": "stub", "object": "chat.completion", "created": int(time.time()), "model": body["model"],
                "choices": [{"index": j, "finish_reason": "stop",
                             "message": {"role": "assistant", "content": f"answer {j} t={body.get('temperature')}"}}
                            for j in range(n)],
                "usage": {"prompt_tokens": 5, "completion_tokens": 3 * n, "total_tokens": 5 + 3 * n}}).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(payload)))
            self.end_headers()
            self.wfile.write(payload)

        def log_message(self, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server


async def raw(n: int, concurrency: int, call: dict) -> None:
    limit = asyncio.Semaphore(concurrency)
    lm = litellm()

    async def one(i: int) -> None:
        async with limit:
            await lm.acompletion(**call, temperature=0.2 + 0.2 * (i % 4), seed=i)

    await asyncio.gather(*(one(i) for i in range(n)))


async def sampled(n: int, concurrency: int, call: dict) -> None:
    configs = [SamplingConfig(name=f"t{k}", temperature=0.2 + 0.2 * k) for k in range(4)]
    sampler = AllocatedSampler(configs, Allocation({c.name: n // 4 for c in configs}), concurrency=concurrency,
                               batch_n=False, seed=0)
    resp = await sampler.acompletion(**call)
    assert len(resp.osca.candidates) == n and all(c.text for c in resp.osca.candidates)


async def timed(way: Any) -> tuple[float, float]:
    """(wall seconds, process CPU seconds) of awaiting `way`."""
    wall, cpu = time.perf_counter(), time.process_time()
    await way
    return time.perf_counter() - wall, time.process_time() - cpu


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=64)
    ap.add_argument("--concurrency", type=int, default=16)
    ap.add_argument("--latency", type=float, default=0.1)
    ap.add_argument("--rounds", type=int, default=3)
    args = ap.parse_args()
    server = stub_server(args.latency)
    call = {"model": "openai/stub", "api_base": f"http://127.0.0.1:{server.server_port}/v1", "api_key": "none",
            "messages": [{"role": "user", "content": "say something"}]}
    times: dict[str, list[tuple[float, float]]] = {"raw litellm.acompletion": [], "AllocatedSampler": []}

    async def alternate() -> None:  # one event loop for both ways: same connection pool, same warm caches
        await raw(args.n, args.concurrency, call)  # warm up imports and connections
        await sampled(args.n, args.concurrency, call)
        for _ in range(args.rounds):
            times["raw litellm.acompletion"].append(await timed(raw(args.n, args.concurrency, call)))
            times["AllocatedSampler"].append(await timed(sampled(args.n, args.concurrency, call)))

    asyncio.run(on_litellm_loop(alternate))
    server.shutdown()
    ideal = args.n / args.concurrency * args.latency
    print(f"{args.n} candidates, concurrency {args.concurrency}, stub latency {args.latency}s "
          f"(ideal wall {ideal:.2f}s), {args.rounds} rounds, median wall / CPU time:")
    wall = {k: statistics.median(w for w, _ in v) for k, v in times.items()}
    cpu = {k: statistics.median(c for _, c in v) for k, v in times.items()}
    for k in times:
        print(f"  {k:24} {wall[k]:.3f}s / CPU {cpu[k]:.3f}s   "
              f"(wall rounds: {', '.join(f'{w:.3f}' for w, _ in times[k])})")
    print(f"ratio sampler / raw: {wall['AllocatedSampler'] / wall['raw litellm.acompletion']:.3f}x wall, "
          f"{cpu['AllocatedSampler'] / cpu['raw litellm.acompletion']:.3f}x CPU")


if __name__ == "__main__":
    main()
