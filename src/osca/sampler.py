"""`AllocatedSampler`: a drop-in for `litellm.completion` that draws the allocation's candidates, verifies
them and returns the selected one.

    sampler = AllocatedSampler(configs, Allocation({"gpt4o-t0.8": 3, "qwen-t1.2": 2}), verifier=verifier)
    resp = sampler.completion(model="openai/gpt-4o", messages=[...])   # same arguments as litellm.completion
    resp.choices[0].message.content     # the selected candidate
    resp.candidates                     # every candidate: config, text, usage, cost, verification, error

Each configuration overrides what it stands for (model, temperature, top_p, extra LiteLLM kwargs, a prompt
variant applied to the messages); every other argument of the call reaches every underlying request.
`completion` and `acompletion` share one implementation (the sync twin runs the async one).
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from pydantic import BaseModel, Field
from tenacity import AsyncRetrying, retry_if_exception, stop_after_attempt, wait_exponential, wait_random

from ._litellm import ensure_provider, litellm, on_litellm_loop, on_litellm_thread
from .allocation import Allocation
from .cache import SampleCache, request_hash
from .configs import SamplingConfig
from .exceptions import BudgetError, ConfigError, SamplingError
from .ledger import Ledger, Spend
from .selectors import Selector, extract_code, normalize_code, select_first_verified, select_majority, \
    select_most_tests
from .verifiers import Verdict, Verifier

__all__ = ["AllocatedSampler", "Candidate"]

PromptVariant = Callable[[list[dict[str, Any]]], list[dict[str, Any]]] | str


class Candidate(BaseModel):
    """One sample: where it came from, what it said, what it cost, how it verified."""

    config: str
    """The configuration's name."""
    index: int
    """Sample index within the configuration (0 .. allocation - 1); stable across re-runs."""
    text: str | None = None
    finish_reason: str | None = None
    usage: dict[str, int] = Field(default_factory=dict)
    cost: float = 0.0
    cached: bool = False
    """Served from the sample cache: no model call, no new spend."""
    error: str | None = None
    """Why this sample has no text (request failed after retries, budget cap reached)."""
    verification: Verdict | None = None


def _transient(e: BaseException) -> bool:
    lm = litellm()
    kinds = tuple(getattr(lm, n) for n in ("RateLimitError", "Timeout", "APIConnectionError", "InternalServerError",
                                          "ServiceUnavailableError", "BadGatewayError") if hasattr(lm, n))
    return isinstance(e, kinds)


def _apply_variant(variant: PromptVariant, messages: list[dict[str, Any]]) -> list[dict[str, Any]]:
    if callable(variant):
        return variant(messages)
    out = [dict(m) for m in messages]
    for m in reversed(out):  # a template rewrites the last user message: "{content}" is its text
        if m.get("role") == "user":
            m["content"] = variant.format(content=m.get("content", ""))
            break
    return out


class AllocatedSampler:
    """Draws `allocation[c]` samples from each configuration c per call, verifies, selects.

    Args:
        configs: the sampling configurations the allocation refers to.
        allocation: samples per configuration name (an `Allocation`, a mapping, or a learner's result).
        verifier: judges each candidate (its `extract`-ed text); None: selection without verification.
        selector: picks among candidates; default: first verified, then most tests passed, then a majority
            vote over normalized code (without a verifier: the majority vote).
        extract: turns an answer into what the verifier checks (default: its first fenced code block).
        call_site: names this call site in the ledger and the cache.
        cache: a `SampleCache` for replay; None: no caching.
        ledger: where spend is recorded and caps are checked (a fresh one by default).
        concurrency: most requests in flight at once.
        retry_stop, retry_wait: tenacity strategies for transient errors (rate limit, timeout, connection,
            5xx); `sleep` replaces asyncio.sleep between retries (tests).
        early_stop: dispatch in waves (round robin over configurations, largest allocation first) and stop once
            a candidate verifies; the samples not drawn are reported as `unspent`.
        wave: samples per wave in early-stop mode (default: one per configuration in use).
        batch_n: ask for several samples in one request with `n`; None: when LiteLLM says the model supports n.
        seed: when given, sample i of a configuration is requested with seed + i (reproducible providers);
            otherwise a caller's `seed` argument is offset the same way.
        prompt_variants: name -> function of the messages, or a template with "{content}" for the last user
            message; configurations name them in `prompt_variant`.
    """

    def __init__(self, configs: Sequence[SamplingConfig], allocation: Allocation | Mapping[str, int] | Any, *,
                 verifier: Verifier | None = None, selector: Selector | None = None,
                 extract: Callable[[str], str] = extract_code, call_site: str = "default",
                 cache: SampleCache | None = None, ledger: Ledger | None = None, concurrency: int = 8,
                 retry_stop: Any = None, retry_wait: Any = None,
                 sleep: Callable[[float], Any] | None = None, early_stop: bool = False, wave: int | None = None,
                 batch_n: bool | None = None, seed: int | None = None,
                 prompt_variants: Mapping[str, PromptVariant] | None = None) -> None:
        self.configs = {c.name: c for c in configs}
        alloc = getattr(allocation, "allocation", allocation)
        self.allocation = alloc if isinstance(alloc, Allocation) else Allocation(dict(alloc))
        unknown = [n for n in self.allocation if n not in self.configs]
        if unknown:
            raise ConfigError(f"allocation names unknown configuration {unknown[0]!r} "
                              f"(configured: {', '.join(self.configs)})")
        if self.allocation.total == 0:
            raise BudgetError("the allocation draws no samples (it sums to zero)")
        self.prompt_variants = dict(prompt_variants or {})
        for c in configs:
            if c.prompt_variant is not None and c.prompt_variant not in self.prompt_variants:
                raise ConfigError(f"configuration {c.name!r} names unknown prompt variant {c.prompt_variant!r}")
        if concurrency < 1:
            raise ConfigError(f"concurrency must be >= 1, got {concurrency}")
        self.verifier = verifier
        default = (select_first_verified | select_most_tests | select_majority(normalize_code)) if verifier \
            else select_majority()
        self.selector = selector or default
        self.extract = extract
        self.call_site = call_site
        self.cache = cache
        self.ledger = ledger or Ledger()
        self.concurrency = concurrency
        self.retry_stop = retry_stop or stop_after_attempt(4)
        self.retry_wait = retry_wait or wait_exponential(multiplier=0.5, max=20) + wait_random(0, 0.5)
        self.sleep = sleep or asyncio.sleep
        self.early_stop = early_stop
        self.wave = wave
        self.batch_n = batch_n
        self.seed = seed
        self._unpriced: set[str] = set()

    # ------------------------------------------------------------------------------------------ planning

    def plan(self) -> list[tuple[str, int]]:
        """(configuration, sample index) in dispatch order: round robin, largest allocation first."""
        ranked = sorted(self.allocation.items(), key=lambda kv: -kv[1])
        return [(name, r) for r in range(ranked[0][1]) for name, k in ranked if r < k]

    def request(self, config: str, kwargs: Mapping[str, Any]) -> dict[str, Any]:
        """The LiteLLM arguments for `config`: the call's, with the configuration's overrides on top."""
        cfg = self.configs[config]
        req = dict(kwargs)
        for key in ("model", "temperature", "top_p"):
            if getattr(cfg, key) is not None:
                req[key] = getattr(cfg, key)
        req.update(cfg.litellm_kwargs)
        if cfg.prompt_variant is not None:
            req["messages"] = _apply_variant(self.prompt_variants[cfg.prompt_variant], req.get("messages", []))
        if "model" not in req:
            raise ConfigError(f"no model: the call gives none and configuration {config!r} sets none")
        ensure_provider(req["model"])
        return req

    # ------------------------------------------------------------------------------------------ calls

    def completion(self, **kwargs: Any) -> Any:
        """Same arguments as `litellm.completion`; returns a `ModelResponse` with `.candidates`."""
        if on_litellm_thread():
            raise ConfigError("AllocatedSampler.completion was called from inside a LiteLLM provider, where it "
                              "would wait on itself forever: await acompletion there instead")
        try:
            asyncio.get_running_loop()
        except RuntimeError:
            return asyncio.run(self.acompletion(**kwargs))
        with concurrent.futures.ThreadPoolExecutor(1) as pool:  # called from inside a running event loop
            return pool.submit(asyncio.run, self.acompletion(**kwargs)).result()

    async def acompletion(self, **kwargs: Any) -> Any:
        """Async twin of `completion`."""
        if kwargs.get("stream"):
            raise ConfigError("stream=True is not supported: candidates must be complete to be verified")
        kwargs.pop("n", None)  # the allocation decides how many samples are drawn
        plan = self.plan()
        limit = asyncio.Semaphore(self.concurrency)
        candidates: list[Candidate] = []
        waves = [plan]
        if self.early_stop:
            size = self.wave or len(self.allocation)
            waves = [plan[i:i + size] for i in range(0, len(plan), size)]
        drawn = 0
        for wave in waves:
            batch = await self._draw(wave, kwargs, limit)
            await self._verify(batch)
            candidates += batch
            drawn += len(wave)
            if self.early_stop and any(c.verification is not None and c.verification.passed for c in batch):
                break
        alive = [c for c in candidates if c.text is not None]
        if not alive:
            causes = sorted({c.error or "no text" for c in candidates})
            raise SamplingError(f"all {len(candidates)} candidates failed: " + "; ".join(causes[:5]), candidates)
        ranked = await asyncio.to_thread(self.selector, alive)  # a selector may call a judge model: not on the loop
        return self._respond(candidates, ranked[0], kwargs, unspent=len(plan) - drawn)

    async def _draw(self, wave: list[tuple[str, int]], kwargs: Mapping[str, Any],
                    limit: asyncio.Semaphore) -> list[Candidate]:
        groups: dict[str, list[int]] = {}
        for name, index in wave:
            groups.setdefault(name, []).append(index)
        jobs = [self._draw_config(name, indices, kwargs, limit) for name, indices in groups.items()]
        found = {(c.config, c.index): c for batch in await asyncio.gather(*jobs) for c in batch}
        return [found[key] for key in wave]

    async def _draw_config(self, name: str, indices: list[int], kwargs: Mapping[str, Any],
                           limit: asyncio.Semaphore) -> list[Candidate]:
        req = self.request(name, kwargs)
        key = request_hash({k: v for k, v in req.items() if k != "seed"})
        out, missing = [], []
        for i in indices:
            hit = await self.cache.aget(self.call_site, name, i, key) if self.cache is not None else None
            if hit is not None:
                out.append(Candidate(config=name, index=i, cached=True, **hit))
            else:
                missing.append(i)
        if out:
            self.ledger.record(self.call_site, name, Spend(cached=len(out)))
        runs = self._requests(req, missing)
        for batch in await asyncio.gather(*(self._call(name, req, run, key, limit) for run in runs)):
            out += batch
        return out

    def _requests(self, req: dict[str, Any], indices: list[int]) -> list[list[int]]:
        """Split sample indices into requests: contiguous runs with n when batching, else one each."""
        batch = self.batch_n
        if batch is None:
            model = req["model"]
            provider = model.split("/", 1)[0] if "/" in model else None
            try:
                supported = litellm().get_supported_openai_params(model=model.split("/", 1)[-1],
                                                                  custom_llm_provider=provider) or []
            except Exception:  # unknown model: one sample per request always works
                supported = []
            batch = "n" in supported
        if not batch:
            return [[i] for i in indices]
        runs: list[list[int]] = []
        for i in indices:
            if runs and runs[-1][-1] == i - 1:
                runs[-1].append(i)
            else:
                runs.append([i])
        return runs

    async def _call(self, name: str, req: dict[str, Any], run: list[int], key: str,
                    limit: asyncio.Semaphore) -> list[Candidate]:
        granted, reason = self.ledger.reserve(len(run))
        refused = [Candidate(config=name, index=i, error=f"not dispatched: {reason}") for i in run[granted:]]
        if not granted:
            return refused
        try:
            return await self._dispatch(name, req, run[:granted], key, limit) + refused
        finally:
            self.ledger.release(granted)

    async def _dispatch(self, name: str, req: dict[str, Any], run: list[int], key: str,
                        limit: asyncio.Semaphore) -> list[Candidate]:
        call = dict(req)
        base = self.seed if self.seed is not None else req.get("seed")
        if base is not None:
            call["seed"] = int(base) + run[0]
        if len(run) > 1:
            call["n"] = len(run)
        lm = litellm()
        try:
            async with limit:
                async for attempt in AsyncRetrying(stop=self.retry_stop, wait=self.retry_wait,
                                                   retry=retry_if_exception(_transient), sleep=self.sleep,
                                                   reraise=True):
                    with attempt:
                        resp = await on_litellm_loop(lambda: lm.acompletion(**call))
        except Exception as e:  # recorded per candidate; fatal only when every candidate failed
            self.ledger.record(self.call_site, name, Spend(failed=len(run)))
            return [Candidate(config=name, index=i, error=f"{type(e).__name__}: {e}") for i in run]
        cost = 0.0
        if call["model"] not in self._unpriced:
            try:
                cost = float(lm.completion_cost(completion_response=resp))
            except Exception:  # no price known for this model (local, scripted, self-hosted): ask once only
                self._unpriced.add(call["model"])
        usage = getattr(resp, "usage", None)
        prompt = int(getattr(usage, "prompt_tokens", 0) or 0)
        completion = int(getattr(usage, "completion_tokens", 0) or 0)
        self.ledger.record(self.call_site, name, Spend(samples=len(run), prompt_tokens=prompt,
                                                      completion_tokens=completion, cost=cost))
        out = []
        share = len(run)
        for j, i in enumerate(run):
            choice = resp.choices[j] if j < len(resp.choices) else None
            text = choice.message.content if choice is not None else None
            value = {"text": text, "finish_reason": getattr(choice, "finish_reason", None),
                     "usage": {"prompt_tokens": prompt // share + (j < prompt % share),
                               "completion_tokens": completion // share + (j < completion % share)},
                     "cost": cost / share}
            if text is None:
                out.append(Candidate(config=name, index=i, error="the model returned no text", **value))
                continue
            if self.cache is not None:
                await self.cache.aset(self.call_site, name, i, key, value)
            out.append(Candidate(config=name, index=i, **value))
        return out

    async def _verify(self, batch: list[Candidate]) -> None:
        if self.verifier is None:
            return
        todo = [c for c in batch if c.text is not None]
        verdicts = await asyncio.gather(*(self.verifier.averify(self.extract(c.text)) for c in todo))
        for c, v in zip(todo, verdicts):
            c.verification = v

    def _respond(self, candidates: list[Candidate], chosen: Candidate, kwargs: Mapping[str, Any],
                 unspent: int) -> Any:
        lm = litellm()
        new = [c for c in candidates if not c.cached and c.text is not None]
        usage = {"prompt_tokens": sum(c.usage.get("prompt_tokens", 0) for c in new),
                 "completion_tokens": sum(c.usage.get("completion_tokens", 0) for c in new)}
        usage["total_tokens"] = usage["prompt_tokens"] + usage["completion_tokens"]
        resp = lm.ModelResponse(
            model=self.request(chosen.config, kwargs)["model"], created=int(time.time()), usage=usage,
            choices=[{"index": 0, "finish_reason": chosen.finish_reason or "stop",
                      "message": {"role": "assistant", "content": chosen.text}}])
        resp.candidates = candidates
        resp.selected = chosen
        resp.unspent = unspent
        resp.cost = sum(c.cost for c in new)
        return resp
