"""`AllocatedSampler`: a drop-in for `litellm.completion` that draws the allocation's candidates, verifies
them and returns the selected one.

    sampler = AllocatedSampler(configs, Allocation({"gpt4o-t0.8": 3, "qwen-t1.2": 2}), verifier=verifier)
    resp = sampler.completion("openai/gpt-4o", messages, tools=tools)   # litellm.completion's arguments
    resp.choices[0].message             # the selected candidate's message, unchanged (text and/or tool calls)
    resp.osca.candidates                # every candidate: config, message, usage, dollars, verification, error

Each configuration overrides what it stands for (model, temperature, top_p, extra LiteLLM kwargs, a prompt
variant applied to the messages, the backend it is sent to); every other argument of the call reaches every
underlying request. `n=k` returns the k best ranked candidates as k choices; `stream=True` returns the
selected message as LiteLLM stream chunks once it is chosen; `timeout=` bounds the whole call.

The parts, each in its own module: `backends` (where requests go: LiteLLM, a `litellm.Router`, a fake),
`policies` (retry, early stop, deadlines), `ledger` (spend and the caps reserved against before dispatch),
`candidates` (the whole-message candidate and the call's `SampleResult`), `responses` (LiteLLM response and
stream types built from the ranked candidates). `completion` and `acompletion` share one implementation (the
sync twin runs the async one).
"""

from __future__ import annotations

import asyncio
import concurrent.futures
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from tenacity import AsyncRetrying, retry_if_exception

from ._litellm import litellm, on_litellm_thread
from .allocation import Allocation
from .backends import Backend, LiteLLMBackend, as_backend
from .cache import SampleCache, request_hash
from .candidates import Candidate, SampleResult, validate_message
from .configs import SamplingConfig
from .exceptions import BudgetError, ConfigError, SamplingError
from .ledger import Ledger, Spend
from .policies import FATAL_ERRORS, TRANSIENT_ERRORS, Deadline, EarlyStop, Retry
from .responses import SampledStream, model_response
from .selectors import Selector, extract_code, normalize_code, select_first_verified, select_majority, \
    select_most_tests
from .verifiers import Verifier

__all__ = ["AllocatedSampler", "Candidate"]

PromptVariant = Callable[[list[dict[str, Any]]], list[dict[str, Any]]] | str

def _is(e: BaseException, names: tuple[str, ...]) -> bool:
    lm = litellm()
    return isinstance(e, tuple(getattr(lm, n) for n in names if hasattr(lm, n)))


def _apply_variant(variant: PromptVariant, messages: list[dict[str, Any]]) -> list[dict[str, Any]]:
    if callable(variant):
        return variant(messages)
    out = [dict(m) for m in messages]
    for m in reversed(out):  # a template rewrites the last user message: "{content}" is its text
        if m.get("role") == "user":
            m["content"] = variant.format(content=m.get("content", ""))
            break
    return out


@dataclass
class _Call:
    """One sampled call's state, shared by its requests."""

    kwargs: dict[str, Any]
    limit: asyncio.Semaphore
    sample_timeout: float | None
    ledger: Ledger
    backend: Backend
    """Where configurations that name no backend send their requests."""
    prompt_variants: Mapping[str, PromptVariant]
    found: dict[tuple[str, int], Candidate] = field(default_factory=dict)
    fatal: BaseException | None = None
    """A non-transient error the call's first requests shared: nothing more is dispatched."""
    answered: bool = False


class AllocatedSampler:
    """Draws `allocation[c]` samples from each configuration c per call, verifies, selects.

    Args:
        configs: the sampling configurations the allocation refers to.
        allocation: samples per configuration name (an `Allocation`, a mapping, or a learner's result).
        verifier: judges each candidate with text (its `extract`-ed text); its `check()`, when it has one,
            runs before the first request (a sandbox that cannot run costs nothing). None: no verification.
        selector: picks among candidates; default: first verified, then most tests passed, then a majority
            vote over normalized code (without a verifier: the majority vote; tool calls vote by name and
            canonical arguments).
        extract: turns an answer's text into what the verifier checks (default: its first fenced code block).
        call_site: names this call site in the ledger and the cache.
        cache: a `SampleCache` for replay; None: no caching.
        ledger: where spend is recorded and its caps reserved against (a fresh one by default).
        backend: where requests go (default `LiteLLMBackend()`).
        backends: backends configurations name in `backend` (a `litellm.Router` is accepted as it is).
        concurrency: most requests in flight at once.
        retry: how a request is retried on a transient error (`Retry`); LiteLLM's own retries are off.
        early_stop: an `EarlyStop` to draw in waves and stop once a candidate verifies; None: draw all at once.
        deadline: time limits for a call and for each request (`Deadline`); a call's `timeout=` overrides
            the call limit.
        batch_n: ask for several samples in one request with `n`; None: when the backend says the model
            supports n (an endpoint that answers with fewer choices is then asked one sample per request).
        seed: when given, sample i of a configuration is requested with seed + i (reproducible providers);
            otherwise a caller's `seed` argument is offset the same way.
        prompt_variants: name -> function of the messages, or a template with "{content}" for the last user
            message; configurations name them in `prompt_variant`.
    """

    def __init__(self, configs: Sequence[SamplingConfig], allocation: Allocation | Mapping[str, int] | Any, *,
                 verifier: Verifier | None = None, selector: Selector | None = None,
                 extract: Callable[[str], str] = extract_code, call_site: str = "default",
                 cache: SampleCache | None = None, ledger: Ledger | None = None,
                 backend: Backend | None = None, backends: Mapping[str, Any] | None = None,
                 concurrency: int = 8, retry: Retry | None = None, early_stop: EarlyStop | None = None,
                 deadline: Deadline | None = None, batch_n: bool | None = None, seed: int | None = None,
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
        self.backend = backend or LiteLLMBackend()
        self.backends = {name: as_backend(b) for name, b in (backends or {}).items()}
        for c in configs:
            if c.prompt_variant is not None and c.prompt_variant not in self.prompt_variants:
                raise ConfigError(f"configuration {c.name!r} names unknown prompt variant {c.prompt_variant!r}")
            if c.backend is not None and c.backend not in self.backends:
                raise ConfigError(f"configuration {c.name!r} names backend {c.backend!r}, which is not among "
                                  f"the sampler's backends ({', '.join(self.backends) or 'none given'})")
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
        self.retry = retry or Retry()
        self.early_stop = early_stop
        self.deadline = deadline or Deadline()
        self.batch_n = batch_n
        self.seed = seed
        self._unpriced: set[str] = set()
        self._ignores_n: set[tuple[int, str, str | None]] = set()
        self._checked = False

    # ------------------------------------------------------------------------------------------ planning

    def plan(self) -> list[tuple[str, int]]:
        """(configuration, sample index) in dispatch order: round robin, largest allocation first."""
        ranked = sorted(self.allocation.items(), key=lambda kv: -kv[1])
        return [(name, r) for r in range(ranked[0][1]) for name, k in ranked if r < k]

    def waves(self) -> list[list[tuple[str, int]]]:
        """The plan cut into the waves it is drawn in: one wave, or `early_stop.wave` samples each."""
        plan = self.plan()
        if self.early_stop is None:
            return [plan]
        size = self.early_stop.wave or len(self.allocation)
        return [plan[i:i + size] for i in range(0, len(plan), size)]

    def request(self, config: str, kwargs: Mapping[str, Any],
                prompt_variants: Mapping[str, PromptVariant] | None = None) -> dict[str, Any]:
        """The LiteLLM arguments for `config`: the call's, with the configuration's overrides on top (its prompt
        variant from `prompt_variants`, default the sampler's)."""
        cfg = self.configs[config]
        req = dict(kwargs)
        for key in ("model", "temperature", "top_p"):
            if getattr(cfg, key) is not None:
                req[key] = getattr(cfg, key)
        req.update(cfg.litellm_kwargs)
        if cfg.prompt_variant is not None:
            variant = (prompt_variants or self.prompt_variants)[cfg.prompt_variant]
            req["messages"] = _apply_variant(variant, req.get("messages", []))
        if "model" not in req:
            raise ConfigError(f"no model: the call gives none and configuration {config!r} sets none")
        return req

    def _backend(self, call: _Call, config: str) -> Backend:
        name = self.configs[config].backend
        return call.backend if name is None else self.backends[name]

    # ------------------------------------------------------------------------------------------ calls

    def completion(self, model: str | None = None, messages: list[dict[str, Any]] | None = None,
                   **kwargs: Any) -> Any:
        """`litellm.completion`'s arguments (model and messages also positionally); returns a `ModelResponse`
        with `.osca`, or with `stream=True` a `SampledStream` of LiteLLM chunks.

        Three more keywords, never sent to a model, change this call only: `ledger=` (spend and caps, e.g. one
        ledger per task while the sampler serves many), `backend=` (where configurations that name no backend
        send requests, e.g. a `litellm.Router` whose model group the call names) and `prompt_variants=` (merged
        over the sampler's).
        """
        if on_litellm_thread():
            raise ConfigError("AllocatedSampler.completion was called from inside a LiteLLM provider, where it "
                              "would wait on itself forever: await acompletion there instead")
        call = self.acompletion(model, messages, **kwargs)
        try:
            asyncio.get_running_loop()
        except RuntimeError:
            return asyncio.run(call)
        with concurrent.futures.ThreadPoolExecutor(1) as pool:  # called from inside a running event loop
            return pool.submit(asyncio.run, call).result()

    async def acompletion(self, model: str | None = None, messages: list[dict[str, Any]] | None = None,
                          **kwargs: Any) -> Any:
        """Async twin of `completion`."""
        kwargs.update({k: v for k, v in (("model", model), ("messages", messages)) if v is not None})
        stream = bool(kwargs.pop("stream", False))
        kwargs.pop("stream_options", None)  # the replayed stream always ends with the usage
        n = kwargs.pop("n", None) or 1
        if not isinstance(n, int) or n < 1:
            raise ConfigError(f"n must be a positive integer, got {n!r}")
        timeout = kwargs.pop("timeout", None) or kwargs.pop("request_timeout", None) or self.deadline.call
        for key in ("request_timeout", "num_retries", "max_retries"):  # the sampler's Retry is the one loop
            kwargs.pop(key, None)
        if timeout is not None and not isinstance(timeout, int | float):
            timeout = getattr(timeout, "read", None) or getattr(timeout, "connect", None)  # an httpx.Timeout
        litellm()  # imported before the clock starts: a first import can take seconds
        await self._preflight()
        limits = [t for t in (self.deadline.sample, timeout) if t is not None]
        backend = kwargs.pop("backend", None)
        call = _Call(kwargs, asyncio.Semaphore(self.concurrency), min(limits) if limits else None,
                     ledger=kwargs.pop("ledger", None) or self.ledger,
                     backend=self.backend if backend is None else as_backend(backend),
                     prompt_variants={**self.prompt_variants, **(kwargs.pop("prompt_variants", None) or {})})
        candidates, unspent = await self._draw_all(call, timeout)
        alive = [c for c in candidates if c.ok]
        if not alive:
            raise self._failure(call, candidates)
        ranked = await asyncio.to_thread(self._rank, alive, n)  # a selector may call a judge: not on the loop
        chosen = ranked[0]
        result = SampleResult(candidates=candidates, ranked=ranked, unspent=unspent)
        resp = model_response(result, self.request(chosen.config, kwargs, call.prompt_variants)["model"])
        return SampledStream(resp) if stream else resp

    async def _preflight(self) -> None:
        """The verifier's cheap `check()` (Docker answers, image present), once, before anything is paid."""
        check = getattr(self.verifier, "check", None)
        if check is not None and not self._checked:
            await asyncio.to_thread(check)
            self._checked = True

    async def _draw_all(self, call: _Call, timeout: float | None) -> tuple[list[Candidate], int]:
        """Draw and verify wave after wave until done, stopped early, stopped by an error, or out of time."""
        waves, done = self.waves(), 0
        try:
            async with asyncio.timeout(timeout):
                for wave in waves:
                    if call.fatal is not None:
                        break
                    await self._draw(call, wave)
                    await self._verify([call.found[k] for k in wave])
                    done += 1
                    if self.early_stop is not None and any(
                            call.found[k].verification is not None and call.found[k].verification.passed
                            for k in wave):
                        break
        except TimeoutError:
            lm = litellm()
            late = lm.Timeout(f"the call's deadline of {timeout} s passed before this sample arrived",
                              model=str(call.kwargs.get("model")), llm_provider="osca")
            for key in waves[done] if done < len(waves) else []:
                if key not in call.found:
                    call.found[key] = Candidate(config=key[0], index=key[1], error=f"Timeout: {late.message}",
                                                exception=late)
            done += 1
        candidates = [call.found[k] for wave in waves[:done] for k in wave]
        return candidates, sum(map(len, waves)) - len(candidates)

    def _failure(self, call: _Call, candidates: list[Candidate]) -> BaseException:
        """What a call with no answer raises: a shared fatal error as LiteLLM's own type, else SamplingError."""
        if call.fatal is not None:
            call.fatal.candidates = candidates  # type: ignore[attr-defined]
            return call.fatal
        causes = sorted({c.error or "no answer" for c in candidates})
        error = SamplingError(f"all {len(candidates)} candidates failed: " + "; ".join(causes[:5]), candidates)
        error.__cause__ = next((c.exception for c in reversed(candidates) if c.exception is not None), None)
        return error

    def _rank(self, alive: list[Candidate], n: int) -> list[Candidate]:
        """The `n` best candidates, best first: the selector's pick, then its pick among the rest, ..."""
        ranked, rest = [], list(alive)
        while rest and len(ranked) < n:
            best = self.selector(rest)[0]
            ranked.append(best)
            rest = [c for c in rest if c is not best]
        return ranked

    async def _draw(self, call: _Call, wave: list[tuple[str, int]]) -> None:
        groups: dict[str, list[int]] = {}
        for name, index in wave:
            groups.setdefault(name, []).append(index)
        await asyncio.gather(*(self._draw_config(call, name, indices) for name, indices in groups.items()))

    async def _draw_config(self, call: _Call, name: str, indices: list[int]) -> None:
        req = self.request(name, call.kwargs, call.prompt_variants)
        key = request_hash({k: v for k, v in req.items() if k != "seed"})
        missing = []
        for i in indices:
            hit = await self._cached(name, i, key)
            if hit is None:
                missing.append(i)
            else:
                call.found[(name, i)] = hit
                call.answered = True
        if len(missing) < len(indices):
            call.ledger.record(self.call_site, name, Spend(cached=len(indices) - len(missing)))
        backend = self._backend(call, name)
        try:
            await asyncio.gather(*(self._request(call, name, backend, req, run, key)
                                   for run in self._runs(backend, req, missing)))
        finally:  # cancelled by the deadline: the claims of samples that never came are let go
            if self.cache is not None:
                for i in missing:
                    if (name, i) not in call.found:
                        await self.cache.arelease(self.call_site, name, i, key)

    async def _cached(self, name: str, index: int, key: str) -> Candidate | None:
        """The cached sample, or None when it must be drawn (the cache then holds this caller's claim on it)."""
        if self.cache is None:
            return None
        hit = await self.cache.aclaim(self.call_site, name, index, key)
        if hit is None:
            return None
        try:
            return Candidate.from_cache(name, index, hit)
        except (ValueError, TypeError):  # stored by an older osca without checking: draw it again
            await self.cache.adiscard(self.call_site, name, index, key)
            return await self._cached(name, index, key)

    def _endpoint(self, backend: Backend, req: Mapping[str, Any]) -> tuple[int, str, str | None]:
        return id(backend), req["model"], req.get("api_base") or req.get("base_url")

    def _runs(self, backend: Backend, req: dict[str, Any], indices: list[int]) -> list[list[int]]:
        """Split sample indices into requests: contiguous runs with n when batching, else one each."""
        batch = self.batch_n
        if batch is None:
            batch = backend.supports_n(req)
        if not batch or self._endpoint(backend, req) in self._ignores_n:
            return [[i] for i in indices]
        runs: list[list[int]] = []
        for i in indices:
            if runs and runs[-1][-1] == i - 1:
                runs[-1].append(i)
            else:
                runs.append([i])
        return runs

    async def _request(self, call: _Call, name: str, backend: Backend, req: dict[str, Any], run: list[int],
                       key: str) -> None:
        """Draw the samples `run` in one request (n = len(run)), within the caps; the samples an endpoint did
        not return (it ignored n) are drawn again one request each."""
        async with call.limit:
            missing = await self._dispatch(call, name, backend, req, run, key)
        if missing:
            self._ignores_n.add(self._endpoint(backend, req))
            await asyncio.gather(*(self._request(call, name, backend, req, [i], key) for i in missing))

    async def _reserve(self, call: _Call, backend: Backend, request: dict[str, Any],
                       samples: int) -> tuple[int, Spend, str | None]:
        """Reserve the request's worst case against the caps, waiting while other requests hold reservations
        that may settle for less; (granted, worst case per sample, why not all)."""
        while True:
            worst, bound = self._worst_case(call.ledger, backend, request)
            granted, why = call.ledger.reserve(samples, worst)
            if granted or not call.ledger.reserved.samples or call.fatal is not None:
                if granted and bound:
                    request["max_tokens"] = worst.completion_tokens
                return granted, worst, why
            await asyncio.sleep(0.01)

    def _worst_case(self, ledger: Ledger, backend: Backend, request: dict[str, Any]) -> tuple[Spend, bool]:
        """The most one sample of `request` may spend: its prompt's tokens (LiteLLM's counter) plus its
        `max_tokens` (else the model's maximum output), priced with LiteLLM's cost map; and whether, with
        neither known, the output is bounded by what the token cap has left (the request then gets that as
        `max_tokens`, so the provider stops there)."""
        caps = ledger.caps
        if caps.tokens is None and caps.dollars is None:
            return Spend(samples=1), False
        lm, model = litellm(), backend.priced_model(request)
        prompt = lm.token_counter(model=model, messages=request.get("messages") or [],
                                  tools=request.get("tools"))
        out = request.get("max_tokens") or request.get("max_completion_tokens")
        if out is None:
            try:
                out = lm.get_model_info(model).get("max_output_tokens")
            except Exception:  # noqa: BLE001  # LiteLLM does not know the model
                out = None
        bound = out is None and caps.tokens is not None
        if bound:
            spent = ledger.total()
            spent.add(ledger.reserved)
            out = max(caps.tokens - spent.tokens - prompt, 1)
        dollars = 0.0
        if out is not None and model not in self._unpriced:
            try:
                dollars = sum(lm.cost_per_token(model=model, prompt_tokens=prompt, completion_tokens=out))
            except Exception:  # noqa: BLE001  # unpriced (local, scripted, self-hosted): it costs nothing
                self._unpriced.add(model)
        return Spend(samples=1, prompt_tokens=prompt, completion_tokens=out or 0, dollars=dollars), bound

    async def _dispatch(self, call: _Call, name: str, backend: Backend, req: dict[str, Any], run: list[int],
                        key: str) -> list[int]:
        """One request for the samples `run`; records candidates in `call.found`; returns the indices the
        response lacked."""
        request = dict(req, num_retries=0)
        if isinstance(backend, LiteLLMBackend):
            request["max_retries"] = 0  # the client's own retries: off, the sampler retries
        base = self.seed if self.seed is not None else req.get("seed")
        if base is not None:
            request["seed"] = int(base) + run[0]
        if len(run) > 1:
            request["n"] = len(run)
        if call.sample_timeout is not None:
            request["timeout"] = call.sample_timeout
        if call.fatal is not None:
            await self._give_up(call, name, run, key, f"not dispatched: {type(call.fatal).__name__} shared by "
                                                      "the call's first requests")
            return []
        granted, worst, why = await self._reserve(call, backend, request, len(run))
        if granted < len(run):
            await self._give_up(call, name, run[granted:], key, f"not dispatched: {why}")
            run = run[:granted]
            if len(run) < 2:
                request.pop("n", None)
            else:
                request["n"] = len(run)
        if not run:
            return []
        try:
            resp = await self._attempts(backend, request, call.sample_timeout)
        except Exception as e:  # recorded per candidate; the call fails only when no candidate answers
            call.ledger.release(granted, worst)
            call.ledger.record(self.call_site, name, Spend(failed=len(run)))
            if _is(e, FATAL_ERRORS) and not call.answered and call.fatal is None:
                call.fatal = e
            await self._give_up(call, name, run, key, f"{type(e).__name__}: {e}", e)
            return []
        except BaseException:  # cancelled (the call's deadline): what it would have spent is unknown
            call.ledger.release(granted, worst)
            raise
        choices = list(getattr(resp, "choices", None) or [])[:len(run)]
        usage = getattr(resp, "usage", None)
        prompt = int(getattr(usage, "prompt_tokens", 0) or 0)
        completion = int(getattr(usage, "completion_tokens", 0) or 0)
        dollars = self._dollars(request["model"], resp)
        call.ledger.record(self.call_site, name, Spend(samples=len(choices), prompt_tokens=prompt,
                                                      completion_tokens=completion, dollars=dollars))
        call.ledger.release(granted, worst)  # after recording: the spend is counted at every moment
        share = max(len(choices), 1)
        for j, (i, choice) in enumerate(zip(run, choices)):
            value = {"finish_reason": getattr(choice, "finish_reason", None),
                     "usage": {"prompt_tokens": prompt // share + (j < prompt % share),
                               "completion_tokens": completion // share + (j < completion % share)},
                     "dollars": dollars / share}
            try:
                value["message"] = validate_message(getattr(choice, "message", None))
            except (ValueError, TypeError) as e:
                await self._give_up(call, name, [i], key, f"malformed answer: {e}", e, **value)
                continue
            if self.cache is not None:
                stored = await self.cache.aput(self.call_site, name, i, key, value)
                value = stored if isinstance(stored, dict) else value  # another process's answer came first
            call.found[(name, i)] = Candidate(config=name, index=i, **value)
            call.answered = True
        return run[len(choices):]

    async def _attempts(self, backend: Backend, request: dict[str, Any], timeout: float | None) -> Any:
        """The request, retried on transient errors by the `Retry` policy; each attempt within `timeout`."""
        async for attempt in AsyncRetrying(stop=self.retry.stop, wait=self.retry.wait, sleep=self.retry.sleep,
                                           retry=retry_if_exception(lambda e: _is(e, TRANSIENT_ERRORS)),
                                           reraise=True):
            with attempt:
                try:
                    return await asyncio.wait_for(backend.acompletion(**request), timeout)
                except TimeoutError:
                    raise litellm().Timeout(f"no answer within {timeout} s", model=request["model"],
                                            llm_provider="osca") from None
        raise AssertionError("unreachable: tenacity re-raises the last error")  # pragma: no cover

    def _dollars(self, model: str, resp: Any) -> float:
        if model in self._unpriced:
            return 0.0
        try:
            return float(litellm().completion_cost(completion_response=resp))
        except Exception:  # noqa: BLE001  # no price known for this model (local, scripted, self-hosted)
            self._unpriced.add(model)
            return 0.0

    async def _give_up(self, call: _Call, name: str, run: list[int], key: str, error: str,
                       exception: BaseException | None = None, **value: Any) -> None:
        """Record samples `run` as failed and let go of their cache claims."""
        for i in run:
            call.found[(name, i)] = Candidate(config=name, index=i, error=error, exception=exception, **value)
            if self.cache is not None:
                await self.cache.arelease(self.call_site, name, i, key)

    async def _verify(self, batch: list[Candidate]) -> None:
        if self.verifier is None:
            return
        todo = [c for c in batch if c.text is not None]
        verdicts = await asyncio.gather(*(self.verifier.averify(self.extract(c.text)) for c in todo))
        for c, v in zip(todo, verdicts):
            c.verification = v
