"""The one place osca imports LiteLLM: lazily, offline-safe."""

from __future__ import annotations

import asyncio
import atexit
import contextvars
import os
import threading
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

T = TypeVar("T")


def litellm() -> Any:
    """The litellm module, imported with the bundled cost map (it would otherwise fetch one over the network)."""
    os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")
    import litellm as _litellm

    return _litellm


def register_provider(name: str, handler: Any) -> None:
    """Add (or replace) a `litellm.CustomLLM` under `name`, so `model="<name>/..."` reaches it."""
    lm = litellm()
    lm.custom_provider_map = [p for p in lm.custom_provider_map if p.get("provider") != name] + [
        {"provider": name, "custom_handler": handler}]
    from litellm.utils import custom_llm_setup

    custom_llm_setup()


_loop: asyncio.AbstractEventLoop | None = None
_loop_thread: threading.Thread | None = None
_loop_lock = threading.Lock()


def _litellm_loop() -> asyncio.AbstractEventLoop:
    """The one event loop, on a daemon thread, that runs every async LiteLLM call osca makes."""
    global _loop, _loop_thread
    with _loop_lock:
        if _loop is None:
            _loop = asyncio.new_event_loop()
            _loop_thread = threading.Thread(target=_loop.run_forever, name="osca-litellm", daemon=True)
            _loop_thread.start()
            atexit.register(_close_loop, _loop)
        return _loop


def on_litellm_thread() -> bool:
    """True inside osca's LiteLLM loop (a provider's code), where blocking on another LiteLLM call would hang."""
    return threading.current_thread() is _loop_thread


def _close_loop(loop: asyncio.AbstractEventLoop) -> None:
    """At exit: cancel what still runs there (LiteLLM's logging worker flushes its queue when cancelled)."""
    async def cancel_the_rest() -> None:
        for _ in range(3):  # a cancelled logging worker may start a new one while it flushes
            rest = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
            for task in rest:
                task.cancel()
            await asyncio.gather(*rest, return_exceptions=True)

    if loop.is_running():
        try:
            asyncio.run_coroutine_threadsafe(cancel_the_rest(), loop).result(timeout=10)
        except Exception:  # noqa: BLE001  # shutting down: never keep the process from exiting
            pass
        loop.call_soon_threadsafe(loop.stop)


def _forget_loop() -> None:  # a forked child has the loop object but not the thread that runs it
    global _loop, _loop_thread
    _loop = _loop_thread = None


os.register_at_fork(after_in_child=_forget_loop)


async def on_litellm_loop(call: Callable[[], Awaitable[T]]) -> T:
    """Await `call()` (an async LiteLLM call) on osca's one LiteLLM loop, in the caller's context.

    LiteLLM keeps process-wide async state (its logging worker's queue) bound to one event loop and moves it,
    unsafely, when calls come from another: sync calls in LangGraph's worker threads each run their own loop,
    and two of them at once could run one logging coroutine twice. On a single loop that never happens.
    """
    context, loop = contextvars.copy_context(), _litellm_loop()

    async def run() -> T:
        return await loop.create_task(call(), context=context)

    if asyncio.get_running_loop() is loop:
        return await run()
    return await asyncio.wrap_future(asyncio.run_coroutine_threadsafe(run(), loop))
