"""A sampler whose cache file is damaged or locked still returns every sample it paid for (issue 11, item 9)."""

from __future__ import annotations

import sqlite3

import pytest

from osca import AllocatedSampler, Allocation, SamplingConfig
from osca.cache import CacheWarning, SampleCache
from osca.providers.scripted import calls

ASK = [{"role": "user", "content": "go"}]


def draw(cache: SampleCache, model: str):
    sampler = AllocatedSampler([SamplingConfig(name="warm", temperature=0.7)], Allocation({"warm": 4}), cache=cache,
                               seed=0)
    return sampler.completion(model, ASK)


@pytest.mark.parametrize("damage", ["garbage", "truncated"])
def test_a_damaged_cache_file_costs_no_paid_sample(tmp_path, script, damage):
    name, model = script(lambda messages, index, params: f"answer {index}")
    path = tmp_path / "cache.sqlite"
    if damage == "garbage":
        path.write_bytes(b"\x00not sqlite\xff" * 512)
    else:
        with SampleCache(path) as cache:
            for i in range(300):
                cache.put("elsewhere", "cfg", i, "req", {"text": "x" * 400})
            cache._db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        path.write_bytes(path.read_bytes()[: path.stat().st_size // 3])
    with pytest.warns(CacheWarning, match="cache.sqlite"), SampleCache(path) as cache:
        resp = draw(cache, model)
    assert sorted(c.text for c in resp.osca.candidates) == [f"answer {i}" for i in range(4)]
    assert calls(name) >= 1 and all(not c.cached for c in resp.osca.candidates)


def test_a_locked_cache_file_costs_no_paid_sample(tmp_path, script):
    name, model = script(lambda messages, index, params: f"answer {index}")
    path = tmp_path / "cache.sqlite"
    SampleCache(path).close()
    holder = sqlite3.connect(path, isolation_level=None)
    holder.execute("BEGIN EXCLUSIVE")  # another program keeps the write lock for the whole call
    try:
        with pytest.warns(CacheWarning, match="locked"), SampleCache(path, timeout=0.05) as cache:
            resp = draw(cache, model)
    finally:
        holder.execute("ROLLBACK")
        holder.close()
    assert sorted(c.text for c in resp.osca.candidates) == [f"answer {i}" for i in range(4)]
    with SampleCache(path) as cache:  # the lock is gone: the next call fills the cache
        again = draw(cache, model)
        assert len(cache) == 4 and sorted(c.text for c in again.osca.candidates) == [f"answer {i}" for i in range(4)]
