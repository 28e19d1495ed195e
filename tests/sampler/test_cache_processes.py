"""Two real processes sharing one cache file: each key is paid for once and both read the same answer (issue 11).

Each worker waits for the other before its first claim (a ready file each), so the two race for the same keys.
"""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap

from osca.cache import SampleCache, request_hash

KEYS = 60
BARRIER = textwrap.dedent("""
    import os, time

    def start_together(prefix, me, everyone=("forward", "reversed")):
        open(f"{prefix}.{me}.ready", "w").close()
        while not all(os.path.exists(f"{prefix}.{who}.ready") for who in everyone):
            time.sleep(0.005)
""")
WORKER = BARRIER + textwrap.dedent("""
    import json, os, sys, time
    from osca.cache import SampleCache, request_hash

    cache_file, paid_log, order = sys.argv[1], sys.argv[2], sys.argv[3]
    key = request_hash({"model": "m"})
    indices = list(range(%(keys)d))
    if order == "reversed":
        indices.reverse()
    answers = {}
    with SampleCache(cache_file, poll=0.005) as cache:
        start_together(paid_log, order)
        for i in indices:
            value = cache.claim("site", "cfg", i, key)
            if value is None:  # ours: "pay" for the sample, then store it
                with open(paid_log, "a") as log:
                    log.write(f"{i}\\n")
                time.sleep(0.002)
                value = cache.put("site", "cfg", i, key, {"text": f"{os.getpid()}: sample {i}"})
            answers[i] = value["text"]
    print(json.dumps(answers))
""" % {"keys": KEYS})


SAMPLER_WORKER = BARRIER + textwrap.dedent("""
    import json, os, sys, time
    from osca import AllocatedSampler, Allocation, SamplingConfig
    from osca.cache import SampleCache
    from osca.providers.scripted import register_script

    cache_file, paid_log, order = sys.argv[1], sys.argv[2], sys.argv[3]

    def answer(messages, index, params):  # a paid model call: logged, slow enough for the other to catch up
        with open(paid_log, "a") as log:
            log.write(f"{index}\\n")
        time.sleep(0.02)
        return f"{os.getpid()} says {index}"

    model = register_script("shared", answer)
    with SampleCache(cache_file, poll=0.005) as cache:
        sampler = AllocatedSampler([SamplingConfig(name="warm", temperature=0.7)], Allocation({"warm": %(keys)d}),
                                   cache=cache, concurrency=4, seed=0)
        start_together(paid_log, order)
        resp = sampler.completion(model, [{"role": "user", "content": "go"}])
    print(json.dumps({c.index: c.text for c in resp.osca.candidates}))
""" % {"keys": 12})


def run_pair(worker: str, tmp_path) -> tuple[dict, dict, list[int]]:
    """Run `worker` twice at once on one cache file; each one's answers by key, and the keys paid for."""
    cache_file, paid_log = tmp_path / "cache.sqlite", tmp_path / "paid.log"
    SampleCache(cache_file).close()  # the schema exists before either worker starts
    workers = [subprocess.Popen([sys.executable, "-c", worker, str(cache_file), str(paid_log), order],
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
               for order in ("forward", "reversed")]
    outputs = [w.communicate(timeout=300) for w in workers]
    assert [w.returncode for w in workers] == [0, 0], [err for _, err in outputs]
    first, second = (json.loads(out) for out, _ in outputs)
    return first, second, [int(line) for line in paid_log.read_text().split()]


def test_two_samplers_in_two_processes_pay_once_per_sample_and_agree(tmp_path):
    first, second, paid = run_pair(SAMPLER_WORKER, tmp_path)
    assert sorted(paid) == list(range(12))  # 12 model calls for 12 samples, not up to 24
    assert first == second and len(first) == 12  # the same candidates in both processes


def test_two_processes_pay_once_per_key_and_agree(tmp_path):
    first, second, paid = run_pair(WORKER, tmp_path)
    cache_file = tmp_path / "cache.sqlite"
    assert sorted(paid) == list(range(KEYS))  # every key paid exactly once, by one of the two
    assert first == second  # and both went on with the same answer for every key
    owners = {text.split(":")[0] for text in first.values()}
    assert len(owners) == 2  # both did part of the work (they met in the middle)
    with SampleCache(cache_file) as cache:
        assert len(cache) == KEYS
        assert all(cache.get("site", "cfg", int(i), request_hash({"model": "m"}))["text"] == text
                   for i, text in first.items())
