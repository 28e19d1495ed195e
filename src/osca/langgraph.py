"""Route the LiteLLM calls of LangGraph nodes through `AllocatedSampler`s, without rewriting the nodes.

    @allocated(sampler)                       # or allocated(sampler)(write_code)
    def write_code(state):
        resp = litellm.completion(model=..., messages=...)   # drawn, verified and selected by the sampler
        ...

    graph = instrument(builder, {"write_code": coder, "plan": planner})   # one store for a whole graph

Routing is scoped with context variables: only calls made inside the wrapped node's execution (its thread or
the tasks it awaits) go through the sampler; calls elsewhere, in other threads or in concurrent nodes, are
untouched. `instrument` binds a mapping node name -> sampler into the graph's config (`configurable`), and a
call finds its node from LangGraph's run metadata (`langgraph_node`). Calls must go through the module
(`litellm.completion(...)`) or osca's alias-proof `osca.completion` / `osca.acompletion`; a
`from litellm import completion` made before osca installed its router keeps the original function, and a
wrapped node that made no routed call logs a warning naming that likely cause. A `litellm.Router` call in a
routed node is sampled with that Router as the call's backend: every candidate goes through the Router.

With `state_key`, the wrapped node adds `{state_key: [SampledCall, ...]}` to its update, so the selected
candidates reach the graph state (declare the key, e.g. `Annotated[list, operator.add]`). Spend is in each
sampler's `ledger`.
"""

from __future__ import annotations

import functools
import inspect
import logging
from collections.abc import Awaitable, Callable, Iterator, Mapping
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass
from typing import Any

from ._litellm import litellm, on_litellm_loop
from .exceptions import ConfigError
from .sampler import AllocatedSampler

__all__ = ["SampledCall", "acompletion", "allocated", "completion", "instrument"]

logger = logging.getLogger(__name__)
CONFIG_KEY = "osca_samplers"
_BYPASS = object()  # set while a sampler runs: its own requests must reach LiteLLM itself
_route: ContextVar[Any] = ContextVar("osca_route", default=None)
_calls: ContextVar[list | None] = ContextVar("osca_calls", default=None)


@dataclass(frozen=True)
class SampledCall:
    """One LiteLLM call a node made, as the sampler answered it."""

    node: str | None
    response: Any
    """The `ModelResponse` (or `SampledStream`); `.osca` holds its candidates, selection and spend."""


def _node_name() -> tuple[str | None, Mapping[str, Any]]:
    try:
        from langgraph.config import get_config

        config = get_config()
    except (ImportError, RuntimeError):  # not inside a LangGraph run
        return None, {}
    return config.get("metadata", {}).get("langgraph_node"), config.get("configurable", {})


def _sampler_for_call() -> AllocatedSampler | None:
    route = _route.get()
    if route is _BYPASS:
        return None
    if route is not None:
        return route
    node, configurable = _node_name()
    samplers = configurable.get(CONFIG_KEY)
    return samplers.get(node) if samplers and node else None


def _record(resp: Any) -> Any:
    calls = _calls.get()
    if calls is not None:
        calls.append(SampledCall(_node_name()[0], resp))
    return resp


def _litellm_functions() -> tuple[Callable[..., Any], Callable[..., Any]]:
    """LiteLLM's own `completion` and `acompletion` (those osca's routers wrap, once they are installed)."""
    lm = litellm()
    if getattr(lm.completion, "__osca_router__", False):  # LiteLLM's functions have a __wrapped__ of their own
        return lm.completion.__wrapped__, lm.acompletion.__wrapped__
    return lm.completion, lm.acompletion


def _sampled(unrouted: Callable[[], Any], args: tuple, kwargs: dict[str, Any], **extra: Any) -> Any:
    """The call through the sampler that routes it (`extra`: per-call sampler arguments), else `unrouted()`."""
    sampler = _sampler_for_call()
    if sampler is None:
        return unrouted()
    with _routing(_BYPASS):
        return _record(sampler.completion(*args, **extra, **kwargs))


async def _asampled(unrouted: Callable[[], Awaitable[Any]], args: tuple, kwargs: dict[str, Any],
                    **extra: Any) -> Any:
    """Async twin of `_sampled`."""
    sampler = _sampler_for_call()
    if sampler is None:
        return await unrouted()
    with _routing(_BYPASS):
        return _record(await sampler.acompletion(*args, **extra, **kwargs))


def completion(*args: Any, **kwargs: Any) -> Any:
    """`litellm.completion`, routed: sampled inside a node wrapped with `allocated` (or bound by `instrument`),
    LiteLLM's own call anywhere else.

    Unlike `from litellm import completion`, which keeps the function from before osca routed it (so the node's
    calls silently go unsampled), this name routes wherever it was imported from.

    Example:
        >>> from osca import completion
        >>> @allocated(sampler)
        ... def solve(state):
        ...     return {"answer": completion("openai/gpt-4o-mini", state["messages"]).choices[0].message.content}
    """
    return _sampled(lambda: _litellm_functions()[0](*args, **kwargs), args, kwargs)


async def acompletion(*args: Any, **kwargs: Any) -> Any:
    """Async twin of `completion`: `litellm.acompletion`, routed."""
    return await _asampled(lambda: on_litellm_loop(lambda: _litellm_functions()[1](*args, **kwargs)), args, kwargs)


def _install() -> None:
    """Route `litellm.completion` / `acompletion` (module attributes: what `litellm.completion(...)` calls), and
    `litellm.Router.completion` / `acompletion`: a Router call in a routed node is sampled with that Router as the
    call's backend, so every candidate keeps its model groups, fallbacks and rate limits."""
    lm = litellm()
    if getattr(lm.completion, "__osca_router__", False):
        return

    @functools.wraps(lm.completion)
    def routed(*args: Any, **kwargs: Any) -> Any:
        return completion(*args, **kwargs)

    @functools.wraps(lm.acompletion)
    async def arouted(*args: Any, **kwargs: Any) -> Any:
        return await acompletion(*args, **kwargs)

    router_completion, router_acompletion = lm.Router.completion, lm.Router.acompletion

    @functools.wraps(router_completion)
    def router_routed(self: Any, *args: Any, **kwargs: Any) -> Any:
        return _sampled(lambda: router_completion(self, *args, **kwargs), args, kwargs, backend=self)

    @functools.wraps(router_acompletion)
    async def router_arouted(self: Any, *args: Any, **kwargs: Any) -> Any:
        return await _asampled(lambda: router_acompletion(self, *args, **kwargs), args, kwargs, backend=self)

    for fn in (routed, arouted, router_routed, router_arouted):
        fn.__osca_router__ = True  # type: ignore[attr-defined]
    lm.completion, lm.acompletion = routed, arouted
    lm.Router.completion, lm.Router.acompletion = router_routed, router_arouted


def _bypass_hint(fn: Callable[..., Any]) -> str:
    """Why a wrapped node's model calls may have missed the sampler: an alias of LiteLLM's unrouted function
    among the node's names when there is one, else the usual causes."""
    fn = inspect.unwrap(fn)
    originals = _litellm_functions()
    try:
        names = inspect.getclosurevars(fn)
        seen = {**names.globals, **names.nonlocals}
    except TypeError:  # not a Python function (a callable object, a builtin)
        seen = {}
    for name, value in seen.items():
        if any(value is original for original in originals):
            return (f"{fn.__module__}.{name} is LiteLLM's function from before osca routed it (a `from litellm "
                    f"import {value.__name__}`): call litellm.{value.__name__}(...) or osca.{value.__name__}(...)")
    return ("likely causes: a `from litellm import completion` made before osca was imported (call "
            "litellm.completion(...) or osca.completion(...) instead), a client that bypasses LiteLLM (the "
            "openai SDK, langchain_openai.ChatOpenAI: use langchain_litellm.ChatLiteLLM), or a thread the node "
            "started without its context (run it with contextvars.copy_context().run)")


@contextmanager
def _routing(route: Any, calls: list[SampledCall] | None = None) -> Iterator[None]:
    """Within the block, LiteLLM calls in this context go to `route` (a sampler, or _BYPASS: to LiteLLM)."""
    tokens = _route.set(route), _calls.set(calls if calls is not None else _calls.get())
    try:
        yield
    finally:
        _route.reset(tokens[0])
        _calls.reset(tokens[1])


def _pick(samplers: AllocatedSampler | Mapping[str, AllocatedSampler]) -> AllocatedSampler | None:
    if isinstance(samplers, AllocatedSampler):
        return samplers
    node, _ = _node_name()
    if node is None:
        raise ConfigError("a node wrapped with a sampler store must run inside a LangGraph graph (it looks up "
                          "its name in the run metadata)")
    return samplers.get(node)


def _with_calls(update: Any, calls: list[SampledCall], state_key: str | None) -> Any:
    if state_key is None or not isinstance(update, dict):
        return update
    return {**update, state_key: list(calls)}


def allocated(samplers: AllocatedSampler | Mapping[str, AllocatedSampler], *,
              state_key: str | None = None) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """Wrap a node (sync or async) so that the LiteLLM calls it makes are sampled.

    Args:
        samplers: one sampler, or a mapping node name -> sampler (the node's name comes from the run).
        state_key: also return the node's sampled calls under this key of its state update.

    Returns:
        A decorator; the wrapped node keeps the original's signature (LangGraph still injects `config`).
    """
    _install()

    def wrap(fn: Callable[..., Any]) -> Callable[..., Any]:
        def finish(update: Any, calls: list[SampledCall], sampler: AllocatedSampler | None) -> Any:
            if sampler is not None and not calls:  # issue 11: a bypassed sampler must not look like a used one
                logger.warning("node %r is wrapped with osca.allocated but made no LiteLLM call through it; if it "
                               "calls a model, that call was not sampled: %s", _node_name()[0] or fn.__name__,
                               _bypass_hint(fn))
            return _with_calls(update, calls, state_key)

        if inspect.iscoroutinefunction(fn):
            async def node(*args: Any, **kwargs: Any) -> Any:
                calls: list[SampledCall] = []
                sampler = _pick(samplers)
                with _routing(sampler, calls):
                    update = await fn(*args, **kwargs)
                return finish(update, calls, sampler)
        else:
            def node(*args: Any, **kwargs: Any) -> Any:
                calls: list[SampledCall] = []
                sampler = _pick(samplers)
                with _routing(sampler, calls):
                    update = fn(*args, **kwargs)
                return finish(update, calls, sampler)
        return functools.update_wrapper(node, fn)

    return wrap


def compile_graph(graph: Any) -> Any:
    """A `StateGraph` builder compiled, or an already compiled graph as it is."""
    return graph.compile() if hasattr(graph, "add_node") else graph


def instrument(graph: Any, samplers: Mapping[str, AllocatedSampler]) -> Any:
    """Sample the LiteLLM calls of every node named in `samplers`; returns the graph bound to them.

    Args:
        graph: a `StateGraph` builder (compiled here) or a compiled graph.
        samplers: node name -> sampler; nodes without an entry call LiteLLM directly.
    """
    _install()
    compiled = compile_graph(graph)
    unknown = set(samplers) - set(getattr(compiled, "nodes", samplers))
    if unknown:
        raise ConfigError(f"no node named {sorted(unknown)[0]!r} in the graph")
    return compiled.with_config(configurable={CONFIG_KEY: dict(samplers)})
