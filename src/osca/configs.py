"""Sampling configurations: what one arm of an allocation stands for."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field

__all__ = ["SamplingConfig"]


class SamplingConfig(BaseModel):
    """One sampling configuration h_i: a model and the parameters it is called with.

    Only `name` is needed to learn an allocation; the rest is what a sampler needs to draw from it.

    Example:
        >>> SamplingConfig(name="gpt4o_0.8", model="gpt-4o", temperature=0.8, cost=0.01)
        SamplingConfig(name='gpt4o_0.8', model='gpt-4o', temperature=0.8, ...)
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    name: str = Field(min_length=1)
    """Unique name; allocations and count files refer to configurations by it."""
    model: str | None = None
    """LiteLLM model string (e.g. ``"openai/gpt-4o"``); `None` keeps the call site's model."""
    temperature: float | None = Field(default=None, ge=0.0)
    """Sampling temperature; `None` keeps the call site's."""
    top_p: float | None = Field(default=None, gt=0.0, le=1.0)
    """Nucleus sampling mass; `None` keeps the call site's."""
    prompt_variant: str | None = None
    """Name of a prompt transformation applied to the call's messages."""
    litellm_kwargs: dict[str, Any] = Field(default_factory=dict)
    """Any other keyword arguments passed to `litellm.completion`."""
    backend: str | None = None
    """Name of a backend given to the sampler in `backends=` (e.g. a `litellm.Router`, whose model group
    `model` then names); None: the sampler's default backend (LiteLLM)."""
    cost: float = Field(default=1.0, gt=0.0)
    """Budget units one sample uses (1.0: budgets count samples). Not dollars: those are `dollars` in the
    sampler's results and the ledger."""
