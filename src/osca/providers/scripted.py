"""A deterministic LiteLLM provider for tests: `model="scripted/<script>"`.

A script is a function `(messages, index, params) -> str` registered under a name. Choice j of a call is
sample `seed + j` (seed defaults to 0), so outputs depend only on the script, the request and the sample
index: the sampler's configurations and sample indices are visible in the answers, and re-runs agree. A
script may raise a LiteLLM exception (e.g. `litellm.RateLimitError`) to exercise retries.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable
from typing import Any

from .._litellm import litellm, register_provider

__all__ = ["Script", "register_script"]

Script = Callable[[list[dict[str, Any]], int, dict[str, Any]], str]

_scripts: dict[str, Script] = {}
_calls: dict[str, int] = {}
_lock = threading.Lock()


def register_script(name: str, script: Script) -> str:
    """Serve `script` as `model="scripted/<name>"`; returns that model string."""
    with _lock:
        _scripts[name] = script
        _calls[name] = 0
    register_provider("scripted", _handler())
    return f"scripted/{name}"


def calls(name: str) -> int:
    """How many requests script `name` has served (each request may carry n > 1 samples)."""
    return _calls.get(name, 0)


_HANDLER: Any = None


def _handler() -> Any:
    global _HANDLER
    if _HANDLER is None:
        lm = litellm()

        class ScriptedLLM(lm.CustomLLM):
            def completion(self, model: str, messages: list, *args: Any, **kwargs: Any) -> Any:
                params = dict(kwargs.get("optional_params") or {})
                script = _scripts.get(model)
                if script is None:
                    raise lm.BadRequestError(f"no script registered as {model!r}", model=model,
                                             llm_provider="scripted")
                with _lock:
                    _calls[model] += 1
                n, seed = int(params.get("n") or 1), int(params.get("seed") or 0)
                import openai  # LiteLLM's exceptions derive from openai's

                try:
                    texts = [script(messages, seed + j, params) for j in range(n)]
                except openai.APIError:
                    raise  # a LiteLLM error the script chose (rate limit, 5xx, ...): retried or not by its kind
                except Exception as e:  # a broken script is a bad request, not a flaky connection
                    raise lm.BadRequestError(f"script {model!r} failed: {type(e).__name__}: {e}", model=model,
                                             llm_provider="scripted") from e
                words = sum(len(str(m.get("content", "")).split()) for m in messages)
                out = sum(len(t.split()) for t in texts)
                return lm.ModelResponse(
                    model=f"scripted/{model}",
                    choices=[{"index": j, "finish_reason": "stop", "message": {"role": "assistant", "content": t}}
                             for j, t in enumerate(texts)],
                    usage={"prompt_tokens": words, "completion_tokens": out, "total_tokens": words + out})

            async def acompletion(self, model: str, messages: list, *args: Any, **kwargs: Any) -> Any:
                await asyncio.sleep(0)
                return self.completion(model, messages, *args, **kwargs)

        _HANDLER = ScriptedLLM()
    return _HANDLER
