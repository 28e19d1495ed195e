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
(`litellm.completion(...)`); a `from litellm import completion` made before osca installed its router keeps
the original function.

With `state_key`, the wrapped node adds `{state_key: [SampledCall, ...]}` to its update, so the selected
candidates reach the graph state (declare the key, e.g. `Annotated[list, operator.add]`). Spend is in each
sampler's `ledger`.
"""

from __future__ import annotations

import functools
import inspect
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass
from typing import Any

from ._litellm import litellm, on_litellm_loop
from .exceptions import ConfigError
from .sampler import AllocatedSampler

__all__ = ["SampledCall", "allocated", "instrument"]

CONFIG_KEY = "osca_samplers"
_BYPASS = object()  # set while a sampler runs: its own requests must reach LiteLLM itself
_route: ContextVar[Any] = ContextVar("osca_route", default=None)
_calls: ContextVar[list | None] = ContextVar("osca_calls", default=None)


@dataclass(frozen=True)
class SampledCall:
    """One LiteLLM call a node made, as the sampler answered it."""

    node: str | None
    response: Any
    """The `ModelResponse`; `.candidates`, `.selected`, `.unspent` as from `AllocatedSampler`."""


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


def _args(args: tuple, kwargs: dict[str, Any]) -> dict[str, Any]:
    named = dict(zip(("model", "messages"), args))
    if len(args) > 2:
        raise ConfigError("pass litellm.completion's arguments after `messages` by keyword to sample them")
    return {**named, **kwargs}


def _install() -> None:
    """Wrap `litellm.completion` / `acompletion` once with routers that consult the context."""
    lm = litellm()
    if getattr(lm.completion, "__osca_router__", False):
        return
    original, aoriginal = lm.completion, lm.acompletion

    @functools.wraps(original)
    def completion(*args: Any, **kwargs: Any) -> Any:
        sampler = _sampler_for_call()
        if sampler is None:
            return original(*args, **kwargs)
        with _routing(_BYPASS):
            return _record(sampler.completion(**_args(args, kwargs)))

    @functools.wraps(aoriginal)
    async def acompletion(*args: Any, **kwargs: Any) -> Any:
        sampler = _sampler_for_call()
        if sampler is None:
            return await on_litellm_loop(lambda: aoriginal(*args, **kwargs))
        with _routing(_BYPASS):
            return _record(await sampler.acompletion(**_args(args, kwargs)))

    completion.__osca_router__ = acompletion.__osca_router__ = True  # type: ignore[attr-defined]
    lm.completion, lm.acompletion = completion, acompletion


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
        if inspect.iscoroutinefunction(fn):
            async def node(*args: Any, **kwargs: Any) -> Any:
                calls: list[SampledCall] = []
                with _routing(_pick(samplers), calls):
                    update = await fn(*args, **kwargs)
                return _with_calls(update, calls, state_key)
        else:
            def node(*args: Any, **kwargs: Any) -> Any:
                calls: list[SampledCall] = []
                with _routing(_pick(samplers), calls):
                    update = fn(*args, **kwargs)
                return _with_calls(update, calls, state_key)
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
