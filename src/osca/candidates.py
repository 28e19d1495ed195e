"""A candidate is one whole assistant message a configuration produced, and what it cost and how it verified.

A leaf module (pydantic only), so selectors, verifiers and the sampler can all import it without cycles.
The message is kept as the provider returned it (content, tool_calls / function_call, reasoning content), so
the selected one can be handed back unchanged and an agent's tool loop continues (issue 11).
"""

from __future__ import annotations

import hashlib
import json
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, model_validator

from .verifiers import Verdict

__all__ = ["Candidate", "SampleResult", "canonical_tool_calls", "validate_message"]

MESSAGE_FIELDS = ("role", "content", "tool_calls", "function_call", "reasoning_content")
"""The parts of an assistant message a candidate keeps (provider-specific extras are dropped)."""


class Candidate(BaseModel):
    """One sample: where it came from, the message it answered with, what it cost, how it verified."""

    model_config = ConfigDict(arbitrary_types_allowed=True, extra="forbid")

    config: str
    """The configuration's name."""
    index: int
    """Sample index within the configuration (0 .. allocation - 1); stable across re-runs."""
    message: dict[str, Any] | None = None
    """The assistant message, whole (`validate_message` checked it); None when the sample failed."""
    finish_reason: str | None = None
    usage: dict[str, int] = Field(default_factory=dict)
    dollars: float = 0.0
    """What this sample cost in dollars (LiteLLM's price map; 0 for unpriced models and cache hits)."""
    cached: bool = False
    """Served from the sample cache: no model call, no new spend."""
    error: str | None = None
    """Why this sample has no message (request failed after retries, a cap stopped it, malformed answer)."""
    exception: BaseException | None = Field(default=None, exclude=True, repr=False)
    """The exception behind `error`, with its LiteLLM type (not serialized)."""
    verification: Verdict | None = None

    @model_validator(mode="before")
    @classmethod
    def _text_answers(cls, data: Any) -> Any:
        """`text=` stands for a text-only message, and `cost=` for `dollars=` (rows cached by older versions)."""
        if isinstance(data, dict) and ("text" in data or "cost" in data):
            data = dict(data)
            text = data.pop("text", None)
            if "message" not in data and text is not None:
                data["message"] = {"role": "assistant", "content": text}
            if "cost" in data:
                data.setdefault("dollars", data.pop("cost"))
        return data

    @property
    def text(self) -> str | None:
        """The message's text content (None for a tool-call-only answer or a failed sample)."""
        return None if self.message is None else self.message.get("content")

    @property
    def tool_calls(self) -> list[dict[str, Any]]:
        """The message's tool calls (a legacy `function_call` counts as one)."""
        if self.message is None:
            return []
        calls = list(self.message.get("tool_calls") or [])
        if self.message.get("function_call"):
            calls.append({"type": "function", "function": self.message["function_call"]})
        return calls

    @property
    def ok(self) -> bool:
        """The sample produced an answer (text or tool calls)."""
        return self.message is not None

    def cache_value(self) -> dict[str, Any]:
        """What the sample cache stores for this sample (replayed whole by `from_cache`)."""
        return {"message": self.message, "finish_reason": self.finish_reason, "usage": self.usage,
                "dollars": self.dollars}

    @classmethod
    def from_cache(cls, config: str, index: int, value: dict[str, Any]) -> Candidate:
        """A cache hit as a candidate (ValueError when the stored answer is not a valid message)."""
        hit = cls(config=config, index=index, cached=True, **value)
        return hit.model_copy(update={"message": validate_message(hit.message)})


def validate_message(message: Any) -> dict[str, Any]:
    """The assistant message as a plain JSON-able dict, or ValueError naming what is wrong with it.

    Checked before anything is cached: content is a string or absent, each tool call names a function and
    carries string arguments, and there is something to answer with (text, tool calls or a function call).
    """
    if hasattr(message, "model_dump"):
        message = message.model_dump()
    if not isinstance(message, dict):
        raise ValueError(f"the answer is not a message but {type(message).__name__}")
    out = {k: message[k] for k in MESSAGE_FIELDS if message.get(k) not in (None, [], "")}
    out["role"] = "assistant"
    content = message.get("content")
    if content is not None and not isinstance(content, str):
        raise ValueError(f"the message content is {type(content).__name__}, not text")
    if content is not None:
        out["content"] = content
    calls = out.get("tool_calls", [])
    if not isinstance(calls, list):
        raise ValueError("tool_calls is not a list")
    out_calls = []
    for k, call in enumerate(calls):
        fn = call.get("function") if isinstance(call, dict) else None
        if not isinstance(fn, dict) or not isinstance(fn.get("name"), str) or not isinstance(
                fn.get("arguments", ""), str):
            raise ValueError(f"malformed tool call {call!r}: it needs a function name and string arguments")
        arguments = fn.get("arguments") or ""
        # a tool message answers a call by its id (LangGraph's ToolNode too): a server that sends none gets one
        made = "call_" + hashlib.sha256(f"{k}:{fn['name']}:{arguments}".encode()).hexdigest()[:24]
        out_calls.append({"id": call.get("id") or made, "type": call.get("type") or "function",
                          "function": {"name": fn["name"], "arguments": arguments}})
    if out_calls:
        out["tool_calls"] = out_calls
    if not isinstance(content, str) and not out_calls and not out.get("function_call"):
        raise ValueError("the model returned no text and no tool call")
    json.dumps(out)  # raises TypeError for anything that would not survive the cache
    return out


def canonical_tool_calls(calls: list[dict[str, Any]]) -> str:
    """Tool calls as one comparable string: function names and their arguments as canonical JSON (key order,
    spacing and call ids do not matter; arguments that are not JSON compare by their whitespace-normalized text)."""
    parts = []
    for call in calls:
        fn = call.get("function") or {}
        try:
            args = json.dumps(json.loads(fn.get("arguments") or "{}"), sort_keys=True, separators=(",", ":"))
        except ValueError:
            args = " ".join(str(fn.get("arguments")).split())
        parts.append(f"{fn.get('name')}({args})")
    return ";".join(parts)


class SampleResult(BaseModel):
    """What a sampled call did, attached to its response as `resp.osca`."""

    model_config = ConfigDict(frozen=True)

    candidates: list[Candidate]
    """Every sample planned and drawn, in dispatch order, failed ones included."""
    ranked: list[Candidate]
    """The candidates returned as the response's choices, best first (`n` of them, or fewer if fewer answered)."""
    unspent: int
    """Samples of the allocation not drawn (early stop, caps, deadline)."""

    @property
    def selected(self) -> Candidate:
        """The best candidate: the response's first choice."""
        return self.ranked[0]

    @property
    def dollars(self) -> float:
        """New spend of this call (cache hits are free)."""
        return sum(c.dollars for c in self.candidates if not c.cached)

    @property
    def usage(self) -> dict[str, int]:
        """Tokens of the new (uncached) samples."""
        new = [c for c in self.candidates if not c.cached]
        prompt = sum(c.usage.get("prompt_tokens", 0) for c in new)
        completion = sum(c.usage.get("completion_tokens", 0) for c in new)
        return {"prompt_tokens": prompt, "completion_tokens": completion, "total_tokens": prompt + completion}
