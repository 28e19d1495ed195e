"""A deterministic LiteLLM provider for tests: `model="scripted/<script>"`.

A script is a function `(messages, index, params) -> str | dict` registered under a name: a string is the
answer's text, a dict the assistant message itself (e.g. `{"content": None, "tool_calls": [...]}` for a tool
call; a tool call's `id` defaults to `call_<index>_<k>`). Choice j of a call is sample `seed + j` (seed
defaults to 0), so outputs depend only on the script, the request and the sample index: the sampler's
configurations and sample indices are visible in the answers, and re-runs agree. A script may raise a LiteLLM
exception (e.g. `litellm.RateLimitError`) to exercise retries. Tokens are words; `max_tokens` cuts a text
answer to that many words (finish_reason "length"), as a real provider would.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable
from typing import Any

from .._litellm import litellm, register_provider

__all__ = ["Script", "register_script"]

Script = Callable[[list[dict[str, Any]], int, dict[str, Any]], str | dict[str, Any]]

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


def _choice(answer: str | dict[str, Any], index: int, params: dict[str, Any]) -> tuple[dict[str, Any], str]:
    """The assistant message a script's answer stands for, and its finish reason."""
    message = {"role": "assistant", "content": answer} if isinstance(answer, str) else {"role": "assistant",
                                                                                        **answer}
    if message.get("tool_calls"):
        message["tool_calls"] = [{"id": f"call_{index}_{k}", "type": "function", **call}
                                 for k, call in enumerate(message["tool_calls"])]
        return message, "tool_calls"
    limit, words = params.get("max_tokens"), str(message.get("content") or "").split()
    if limit is not None and len(words) > int(limit):
        return {**message, "content": " ".join(words[:int(limit)])}, "length"
    return message, "stop"


def _words(message: dict[str, Any]) -> int:
    """The message's tokens as the scripted provider counts them: its words, tool calls' arguments included."""
    calls = " ".join(str(c.get("function", {}).get("arguments", "")) for c in message.get("tool_calls") or [])
    return len(f"{message.get('content') or ''} {calls}".split())


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
                    answers = [_choice(script(messages, seed + j, params), seed + j, params) for j in range(n)]
                except openai.APIError:
                    raise  # a LiteLLM error the script chose (rate limit, 5xx, ...): retried or not by its kind
                except Exception as e:  # a broken script is a bad request, not a flaky connection
                    raise lm.BadRequestError(f"script {model!r} failed: {type(e).__name__}: {e}", model=model,
                                             llm_provider="scripted") from e
                words = sum(len(str(m.get("content", "")).split()) for m in messages)
                out = sum(_words(message) for message, _ in answers)
                return lm.ModelResponse(
                    model=f"scripted/{model}",
                    choices=[{"index": j, "finish_reason": finish, "message": message}
                             for j, (message, finish) in enumerate(answers)],
                    usage={"prompt_tokens": words, "completion_tokens": out, "total_tokens": words + out})

            async def acompletion(self, model: str, messages: list, *args: Any, **kwargs: Any) -> Any:
                await asyncio.sleep(0)
                return self.completion(model, messages, *args, **kwargs)

        _HANDLER = ScriptedLLM()
    return _HANDLER
