"""Two real processes sharing one cache file: each key is paid for once and both read the same answer (issue 11)."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap

from osca.cache import SampleCache, request_hash

KEYS = 60
WORKER = textwrap.dedent("""
    import json, os, sys, time
    from osca.cache import SampleCache, request_hash

    cache_file, paid_log, order = sys.argv[1], sys.argv[2], sys.argv[3]
    key = request_hash({"model": "m"})
    indices = list(range(%(keys)d))
    if order == "reversed":
        indices.reverse()
    answers = {}
    with SampleCache(cache_file, poll=0.005) as cache:
        open(f"{paid_log}.{order}.ready", "w").close()  # both start together: wait for the other one
        while not all(os.path.exists(f"{paid_log}.{o}.ready") for o in ("forward", "reversed")):
            time.sleep(0.005)
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


def test_two_processes_pay_once_per_key_and_agree(tmp_path):
    cache_file, paid_log = tmp_path / "cache.sqlite", tmp_path / "paid.log"
    SampleCache(cache_file).close()  # the schema exists before either worker starts
    workers = [subprocess.Popen([sys.executable, "-c", WORKER, str(cache_file), str(paid_log), order],
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
               for order in ("forward", "reversed")]
    outputs = [w.communicate(timeout=120) for w in workers]
    assert [w.returncode for w in workers] == [0, 0], [err for _, err in outputs]
    first, second = (json.loads(out) for out, _ in outputs)
    paid = [int(line) for line in paid_log.read_text().split()]
    assert sorted(paid) == list(range(KEYS))  # every key paid exactly once, by one of the two
    assert first == second  # and both went on with the same answer for every key
    owners = {text.split(":")[0] for text in first.values()}
    assert len(owners) == 2  # both did part of the work (they met in the middle)
    with SampleCache(cache_file) as cache:
        assert len(cache) == KEYS
        assert all(cache.get("site", "cfg", int(i), request_hash({"model": "m"}))["text"] == text
                   for i, text in first.items())
