"""SampleCache, request_hash, Ledger, Spend and Caps on their own."""

from __future__ import annotations

import asyncio
import dataclasses
import threading
import time

import pytest

from osca.cache import CacheWarning, SampleCache, request_hash
from osca.exceptions import BudgetError
from osca.ledger import Caps, Ledger, Spend

KEY = request_hash({"model": "scripted/x", "messages": [{"role": "user", "content": "hi"}]})
VALUE = {"text": "def f():\n    return 1\n", "finish_reason": "stop",
         "usage": {"prompt_tokens": 3, "completion_tokens": 7}, "cost": 0.25}


# ---------------------------------------------------------------------------------------------- SampleCache

@pytest.fixture(params=["memory", "file"])
def cache(request, tmp_path):
    with SampleCache(":memory:" if request.param == "memory" else tmp_path / "cache.sqlite") as c:
        yield c


def test_set_then_get_round_trips(cache):
    assert cache.get("site", "cfg", 0, KEY) is None
    cache.put("site", "cfg", 0, KEY, VALUE)
    assert cache.get("site", "cfg", 0, KEY) == VALUE
    assert len(cache) == 1


@pytest.mark.parametrize("other", [("other site", "cfg", 0, KEY), ("site", "other", 0, KEY), ("site", "cfg", 1, KEY),
                                   ("site", "cfg", 0, request_hash({"model": "scripted/y"}))])
def test_every_part_of_the_key_matters(cache, other):
    cache.put("site", "cfg", 0, KEY, VALUE)
    assert cache.get(*other) is None


def test_the_first_value_stored_under_a_key_wins(cache):
    assert cache.put("site", "cfg", 0, KEY, VALUE) == VALUE
    assert cache.put("site", "cfg", 0, KEY, {**VALUE, "text": "later"}) == VALUE  # the stored one comes back
    assert cache.get("site", "cfg", 0, KEY) == VALUE
    assert len(cache) == 1


def test_a_claim_hands_the_key_over_once(cache):
    assert cache.claim("site", "cfg", 0, KEY) is None  # ours to draw
    cache.put("site", "cfg", 0, KEY, VALUE)
    assert cache.claim("site", "cfg", 0, KEY) == VALUE  # drawn: every later claim reads it back


def test_a_second_caller_waits_for_the_first_and_reads_its_answer(tmp_path):
    with SampleCache(tmp_path / "c.sqlite", poll=0.01) as cache:
        assert cache.claim("site", "cfg", 0, KEY) is None
        got = []
        waiter = threading.Thread(target=lambda: got.append(cache.claim("site", "cfg", 0, KEY)))
        waiter.start()
        waiter.join(0.3)
        assert waiter.is_alive() and got == []  # waiting, not drawing the key a second time
        cache.put("site", "cfg", 0, KEY, VALUE)
        waiter.join(5)
        assert got == [VALUE]


def test_a_released_claim_passes_to_the_waiting_caller(tmp_path):
    path = tmp_path / "c.sqlite"
    with SampleCache(path, poll=0.01) as first, SampleCache(path, poll=0.01) as second:
        assert first.claim("site", "cfg", 0, KEY) is None
        got = []
        waiter = threading.Thread(target=lambda: got.append(second.claim("site", "cfg", 0, KEY) or "mine"))
        waiter.start()
        waiter.join(0.3)
        assert waiter.is_alive()
        first.release("site", "cfg", 0, KEY)  # the first draw failed
        waiter.join(5)
        assert got == ["mine"]
        assert second.put("site", "cfg", 0, KEY, VALUE) == VALUE


def test_a_dead_owners_claim_is_taken_over_at_once(tmp_path):
    import subprocess
    import sys

    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    path = tmp_path / "c.sqlite"
    with SampleCache(path, lease=3600) as cache:
        cache.claim("site", "cfg", 0, KEY)
        cache._db.execute("UPDATE claims SET owner='gone', pid=?", (int(dead.stdout),))  # it crashed mid-draw
    with SampleCache(path, lease=3600) as cache:
        assert cache.claim("site", "cfg", 0, KEY) is None


def test_a_claim_of_this_process_that_is_never_put_holds_until_its_lease_ends(tmp_path):
    with SampleCache(tmp_path / "c.sqlite", lease=0.4, poll=0.01) as cache:
        assert cache.claim("site", "cfg", 0, KEY) is None  # a caller that then never puts nor releases
        start = time.monotonic()
        assert cache.claim("site", "cfg", 0, KEY) is None
        assert 0.2 < time.monotonic() - start < 10


def test_a_claim_from_another_host_holds_until_its_lease_ends(tmp_path):
    path = tmp_path / "c.sqlite"
    with SampleCache(path) as cache:
        cache.claim("site", "cfg", 0, KEY)
        cache._db.execute("UPDATE claims SET owner='remote', host='elsewhere', expires=?", (time.time() + 0.4,))
    with SampleCache(path, poll=0.01) as cache:
        start = time.monotonic()
        assert cache.claim("site", "cfg", 0, KEY) is None
        assert 0.2 < time.monotonic() - start < 10


def test_waiting_for_a_claim_can_be_cancelled(tmp_path):
    path = tmp_path / "c.sqlite"
    with SampleCache(path) as holder, SampleCache(path, poll=0.01) as waiter:
        holder.claim("site", "cfg", 0, KEY)

        async def go():
            with pytest.raises(TimeoutError):
                await asyncio.wait_for(waiter.aclaim("site", "cfg", 0, KEY), 0.2)

        asyncio.run(go())


def test_a_claim_won_after_its_caller_was_cancelled_goes_back(tmp_path):
    import sqlite3

    path = tmp_path / "c.sqlite"
    with SampleCache(path, timeout=5) as cache:
        holder = sqlite3.connect(path, isolation_level=None)
        holder.execute("BEGIN EXCLUSIVE")  # the claim's look at the key blocks on this lock...

        async def go():
            with pytest.raises(TimeoutError):  # ...so its caller's deadline passes first
                await asyncio.wait_for(cache.aclaim("site", "cfg", 0, KEY), 0.2)
            holder.execute("ROLLBACK")  # now the look goes through and wins the claim, for nobody
            await asyncio.get_running_loop().shutdown_default_executor()  # the look is over...
            for _ in range(10):
                await asyncio.sleep(0.01)  # ...and its completion has reached this loop

        asyncio.run(go())
        holder.close()
        got = []
        again = threading.Thread(target=lambda: got.append(cache.claim("site", "cfg", 0, KEY)))
        again.start()
        again.join(10)
        assert got == [None]  # the key is free: a new caller draws it instead of waiting forever


def test_a_damaged_row_is_a_miss_and_is_replaced(cache):
    cache.put("site", "cfg", 0, KEY, VALUE)
    cache._db.execute("UPDATE samples SET value='{\"text\": \"trunc'")
    assert cache.get("site", "cfg", 0, KEY) is None
    assert cache.claim("site", "cfg", 0, KEY) is None
    assert cache.put("site", "cfg", 0, KEY, VALUE) == VALUE
    assert cache.get("site", "cfg", 0, KEY) == VALUE


def test_a_value_that_is_not_json_is_refused_and_frees_its_key(tmp_path):
    path = tmp_path / "c.sqlite"
    with SampleCache(path, lease=30) as cache, SampleCache(path, poll=0.01) as other:
        assert cache.claim("site", "cfg", 0, KEY) is None
        with pytest.raises(TypeError):
            cache.put("site", "cfg", 0, KEY, {"text": object()})
        start = time.monotonic()
        assert other.claim("site", "cfg", 0, KEY) is None
        assert time.monotonic() - start < 10  # not left waiting for the 30 s lease
        assert cache.get("site", "cfg", 0, KEY) is None


def test_discard_drops_a_value_the_caller_cannot_use(cache):
    cache.put("site", "cfg", 0, KEY, {"text": ["not", "a", "string"]})
    cache.discard("site", "cfg", 0, KEY)
    assert cache.claim("site", "cfg", 0, KEY) is None


def unreadable(path, how):
    if how == "garbage":
        path.write_bytes(b"this is not a database" * 100)
    else:  # a real cache file cut off mid-page
        with SampleCache(path) as c:
            for i in range(200):
                c.put("site", "cfg", i, KEY, {**VALUE, "text": "x" * 500})
            c._db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        path.write_bytes(path.read_bytes()[: path.stat().st_size // 3])


@pytest.mark.parametrize("how", ["garbage", "truncated"])
def test_an_unreadable_cache_file_degrades_to_one_warning(tmp_path, how):
    path = tmp_path / "c.sqlite"
    unreadable(path, how)
    with pytest.warns(CacheWarning, match="c.sqlite") as warned:
        with SampleCache(path) as cache:
            assert cache.claim("site", "cfg", 150, KEY) is None  # drawn without the cache
            assert cache.put("site", "cfg", 150, KEY, VALUE) == VALUE  # the paid sample comes back
            assert cache.get("site", "cfg", 150, KEY) is None
            assert cache.put("site", "cfg", 151, KEY, VALUE) == VALUE
    assert len(warned) == 1


def test_a_locked_cache_file_degrades_while_it_is_locked(tmp_path):
    import sqlite3

    path = tmp_path / "c.sqlite"
    with SampleCache(path, timeout=0.05) as cache:
        cache.put("site", "cfg", 0, KEY, VALUE)
        other = sqlite3.connect(path, isolation_level=None)
        other.execute("BEGIN EXCLUSIVE")  # another program holds the write lock
        with pytest.warns(CacheWarning, match="locked"):
            assert cache.claim("site", "cfg", 1, KEY) is None
            assert cache.put("site", "cfg", 1, KEY, VALUE) == VALUE
        other.execute("ROLLBACK")
        other.close()
        assert cache.put("site", "cfg", 1, KEY, VALUE) == VALUE  # the lock is gone: stored again
        assert cache.get("site", "cfg", 1, KEY) == VALUE


def test_async_round_trip(cache):
    async def go():
        assert await cache.aget("site", "cfg", 3, KEY) is None
        await asyncio.gather(*(cache.aput("site", "cfg", i, KEY, {**VALUE, "text": f"t{i}"}) for i in range(4)))
        return await asyncio.gather(*(cache.aget("site", "cfg", i, KEY) for i in range(4)))

    got = asyncio.run(go())
    assert [v["text"] for v in got] == ["t0", "t1", "t2", "t3"]
    assert cache.get("site", "cfg", 2, KEY) == {**VALUE, "text": "t2"}  # async writes are seen by sync reads


def test_a_cache_file_persists_across_cache_objects(tmp_path):
    path = tmp_path / "deeper" / "runs" / "cache.sqlite"  # parent folders are created
    with SampleCache(path) as first:
        first.put("site", "cfg", 0, KEY, VALUE)
        first.put("site", "cfg", 1, KEY, {**VALUE, "text": "second"})
    with SampleCache(str(path)) as second:
        assert len(second) == 2
        assert second.get("site", "cfg", 0, KEY) == VALUE
        assert second.get("site", "cfg", 1, KEY)["text"] == "second"


def test_memory_caches_are_separate():
    with SampleCache(":memory:") as a, SampleCache() as b:
        a.put("site", "cfg", 0, KEY, VALUE)
        assert b.get("site", "cfg", 0, KEY) is None and len(b) == 0


def test_concurrent_writers_from_threads(tmp_path):
    with SampleCache(tmp_path / "c.sqlite") as cache:
        def write(t: int) -> None:
            for i in range(25):
                cache.put("site", f"cfg{t}", i, KEY, {"text": f"{t}-{i}"})

        threads = [threading.Thread(target=write, args=(t,)) for t in range(4)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert len(cache) == 100
        assert cache.get("site", "cfg3", 24, KEY) == {"text": "3-24"}


# ---------------------------------------------------------------------------------------------- request_hash

def test_request_hash_ignores_key_order_at_every_level():
    a = {"model": "m", "temperature": 0.5, "messages": [{"role": "user", "content": "x"}], "extra": {"a": 1, "b": 2}}
    b = {"extra": {"b": 2, "a": 1}, "messages": [{"content": "x", "role": "user"}], "temperature": 0.5, "model": "m"}
    assert request_hash(a) == request_hash(b)
    assert len(request_hash(a)) == 64 and int(request_hash(a), 16) >= 0  # sha256 hex


@pytest.mark.parametrize("change", [
    {"model": "other"}, {"temperature": 0.6}, {"messages": [{"role": "user", "content": "y"}]},
    {"messages": [{"role": "system", "content": "x"}]}, {"max_tokens": 5},
])
def test_request_hash_differs_for_different_requests(change):
    base = {"model": "m", "temperature": 0.5, "messages": [{"role": "user", "content": "x"}]}
    assert request_hash({**base, **change}) != request_hash(base)


def test_request_hash_accepts_values_that_are_not_json():
    class Tool:
        def __repr__(self) -> str:
            return "Tool(search)"

    req = {"model": "m", "tools": [Tool()]}
    assert request_hash(req) == request_hash({"model": "m", "tools": [Tool()]})
    assert request_hash(req) != request_hash({"model": "m"})


# ---------------------------------------------------------------------------------------------- Spend

def test_spend_add_sums_every_field():
    a = Spend(samples=2, cached=1, failed=3, prompt_tokens=10, completion_tokens=20, dollars=0.5)
    b = Spend(samples=1, cached=4, failed=0, prompt_tokens=5, completion_tokens=7, dollars=0.25)
    a.add(b)
    assert a == Spend(samples=3, cached=5, failed=3, prompt_tokens=15, completion_tokens=27, dollars=0.75)
    assert b == Spend(samples=1, cached=4, failed=0, prompt_tokens=5, completion_tokens=7, dollars=0.25)  # untouched
    assert a.tokens == 42
    assert {f.name for f in dataclasses.fields(Spend)} == {"samples", "cached", "failed", "prompt_tokens",
                                                           "completion_tokens", "dollars"}


# ---------------------------------------------------------------------------------------------- Ledger

def filled() -> Ledger:
    ledger = Ledger()
    ledger.record("plan", "a", Spend(samples=2, prompt_tokens=10, completion_tokens=4, dollars=0.1))
    ledger.record("plan", "a", Spend(samples=1, prompt_tokens=5, completion_tokens=2, dollars=0.05))
    ledger.record("plan", "b", Spend(samples=1, cached=2, prompt_tokens=3, completion_tokens=1))
    ledger.record("code", "a", Spend(samples=4, failed=1, prompt_tokens=8, completion_tokens=16, dollars=0.4))
    return ledger


def test_ledger_totals_filter_by_call_site_and_configuration():
    ledger = filled()
    assert ledger.total(call_site="plan", config="a") == Spend(samples=3, prompt_tokens=15, completion_tokens=6,
                                                               dollars=pytest.approx(0.15))
    assert ledger.total(call_site="plan") == Spend(samples=4, cached=2, prompt_tokens=18, completion_tokens=7,
                                                   dollars=pytest.approx(0.15))
    assert ledger.total(config="a") == Spend(samples=7, failed=1, prompt_tokens=23, completion_tokens=22,
                                             dollars=pytest.approx(0.55))
    assert ledger.total() == Spend(samples=8, cached=2, failed=1, prompt_tokens=26, completion_tokens=23,
                                   dollars=pytest.approx(0.55))
    assert ledger.total(call_site="code", config="b") == Spend()
    assert ledger.total(call_site="nowhere") == Spend()


def test_ledger_totals_are_copies():
    ledger = filled()
    total = ledger.total(call_site="plan", config="a")
    total.add(Spend(samples=100))
    assert ledger.total(call_site="plan", config="a").samples == 3


def test_ledger_records_from_many_threads():
    ledger = Ledger()

    def spend() -> None:
        for _ in range(500):
            ledger.record("site", "cfg", Spend(samples=1, prompt_tokens=2))

    threads = [threading.Thread(target=spend) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert ledger.total() == Spend(samples=4000, prompt_tokens=8000)


# ---------------------------------------------------------------------------------------------- Caps

@pytest.mark.parametrize("caps", [dict(samples=0), dict(samples=-1), dict(tokens=0), dict(dollars=0.0),
                                  dict(dollars=-1.0), dict(samples=5, tokens=0)])
def test_caps_that_allow_nothing_are_budget_errors(caps):
    with pytest.raises(BudgetError):
        Caps(**caps)


def test_valid_caps():
    assert Caps() == Caps(samples=None, tokens=None, dollars=None)
    caps = Caps(samples=1, tokens=1, dollars=0.001)
    assert (caps.samples, caps.tokens, caps.dollars) == (1, 1, 0.001)
    with pytest.raises(dataclasses.FrozenInstanceError):
        caps.samples = 5  # type: ignore[misc]


def test_reserve_without_caps_is_unlimited():
    ledger = filled()
    assert ledger.reserve(10**9) == (10**9, None)


def test_reserve_under_a_sample_cap():
    ledger = Ledger(caps=Caps(samples=5))
    assert ledger.reserve(5) == (5, None)
    granted, why = ledger.reserve(1)  # all 5 are claimed by requests still in flight
    assert granted == 0 and "sample cap 5" in why
    ledger.release(5)
    ledger.record("s", "c", Spend(samples=3, cached=10, failed=10))  # only drawn samples count
    assert ledger.reserve(2) == (2, None)
    ledger.release(2)
    granted, why = ledger.reserve(3)  # a request larger than the room left gets what fits
    assert granted == 2 and "sample cap" in why


def test_reserve_under_token_and_dollar_caps():
    tokens = Ledger(caps=Caps(tokens=10))
    tokens.record("s", "c", Spend(prompt_tokens=4, completion_tokens=5))
    assert tokens.reserve(100) == (100, None)  # 9 of 10 tokens used: one more request may go
    tokens.record("s", "c", Spend(completion_tokens=1))
    granted, why = tokens.reserve(1)
    assert granted == 0 and "token cap 10" in why

    dollars = Ledger(caps=Caps(dollars=1.0))
    dollars.record("s", "c", Spend(dollars=0.75))
    assert dollars.reserve(1) == (1, None)
    dollars.record("s", "c", Spend(dollars=0.25))
    granted, why = dollars.reserve(1)
    assert granted == 0 and "dollar cap" in why


def test_caps_apply_across_call_sites():
    ledger = Ledger(caps=Caps(samples=4))
    ledger.record("plan", "a", Spend(samples=2))
    ledger.record("code", "b", Spend(samples=2))
    assert ledger.reserve(1)[0] == 0
