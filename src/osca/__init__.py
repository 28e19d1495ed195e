"""osca: learned sample-budget allocation for LLM calls (OSCA, arXiv 2410.22480).

Importing osca is cheap: learning is numpy-only; LiteLLM, LangGraph and Docker load only where used
(the sampler's names below are imported on first access).
"""

from typing import Any

from .allocation import Allocation
from .configs import SamplingConfig
from .counts import CountMatrix, CountSplit, ScoreMatrix, load_counts
from .exceptions import BudgetError, ConfigError, DataError, OscaError
from .learn import AllocationResult, learn_allocation
from .objective import objective, upper_bound

__all__ = [
    "AllocatedSampler",
    "Allocation",
    "AllocationResult",
    "Backend",
    "BudgetError",
    "Candidate",
    "Caps",
    "ConfigError",
    "CountMatrix",
    "CountSplit",
    "DataError",
    "Deadline",
    "EarlyStop",
    "Ledger",
    "LiteLLMBackend",
    "OscaError",
    "Retry",
    "RouterBackend",
    "SampleResult",
    "SamplingConfig",
    "ScoreMatrix",
    "acompletion",
    "completion",
    "learn_allocation",
    "litellm",
    "load_counts",
    "objective",
    "upper_bound",
]


_LAZY = {"AllocatedSampler": "sampler", "Backend": "backends", "LiteLLMBackend": "backends",
         "RouterBackend": "backends", "Candidate": "candidates", "SampleResult": "candidates", "Caps": "ledger",
         "Ledger": "ledger", "Deadline": "policies", "EarlyStop": "policies", "Retry": "policies",
         "completion": "langgraph", "acompletion": "langgraph", "litellm": "_litellm"}
"""Names whose modules pull in LiteLLM, tenacity or pydantic models: imported only when asked for."""


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(f".{_LAZY[name]}", __name__), name)
    raise AttributeError(f"module 'osca' has no attribute {name!r}")
