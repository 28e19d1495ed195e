"""What a sampled call returns: LiteLLM's own response types, built from the ranked candidates.

`model_response` returns a `litellm.ModelResponse` whose choices are the ranked candidates' messages, unchanged
(tool calls included, so an agent's tool loop continues); `SampledStream` replays that response as LiteLLM
stream chunks, iterable sync and async, for callers that asked for `stream=True` (chat UIs, LangGraph's
`stream_mode="messages"`). Both carry `.osca`, the `SampleResult`.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import AsyncIterator, Iterator
from typing import Any

from ._litellm import litellm
from .candidates import Candidate, SampleResult

__all__ = ["SampledStream", "model_response"]


def _finish_reason(c: Candidate) -> str:
    return c.finish_reason or ("tool_calls" if c.tool_calls else "stop")


def model_response(result: SampleResult, model: str) -> Any:
    """A `ModelResponse` with one choice per ranked candidate; usage and `.osca` cover the whole call."""
    resp = litellm().ModelResponse(
        id=f"osca-{uuid.uuid4().hex}", model=model, created=int(time.time()), usage=result.usage,
        choices=[{"index": j, "finish_reason": _finish_reason(c), "message": dict(c.message or {})}
                 for j, c in enumerate(result.ranked)])
    resp.osca = result
    return resp


class SampledStream:
    """A finished response as LiteLLM stream chunks (`ModelResponseStream`): `for chunk in stream` or
    `async for chunk in stream`; text first, then reasoning, then one delta per tool call, then the finish
    reason with the usage."""

    def __init__(self, response: Any) -> None:
        self.response = response
        self.osca: SampleResult = response.osca

    def chunks(self) -> list[Any]:
        lm = litellm()
        from litellm.types.utils import Delta, StreamingChoices

        def chunk(index: int, delta: dict[str, Any], finish: str | None = None, **extra: Any) -> Any:
            return lm.ModelResponseStream(
                id=self.response.id, model=self.response.model, created=self.response.created,
                choices=[StreamingChoices(index=index, delta=Delta(**delta), finish_reason=finish)], **extra)

        out = []
        for j, c in enumerate(self.osca.ranked):
            message = c.message or {}
            out.append(chunk(j, {"role": "assistant", "content": message.get("content")}))
            if message.get("reasoning_content"):
                out.append(chunk(j, {"reasoning_content": message["reasoning_content"]}))
            if message.get("function_call"):
                out.append(chunk(j, {"function_call": message["function_call"]}))
            for k, call in enumerate(message.get("tool_calls") or []):
                out.append(chunk(j, {"tool_calls": [{"index": k, **call}]}))
            out.append(chunk(j, {}, _finish_reason(c)))
        out[-1].usage = lm.Usage(**self.osca.usage)
        return out

    def __iter__(self) -> Iterator[Any]:
        return iter(self.chunks())

    async def __aiter__(self) -> AsyncIterator[Any]:
        for c in self.chunks():
            yield c
