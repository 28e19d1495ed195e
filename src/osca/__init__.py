"""osca: learned sample-budget allocation for LLM calls (OSCA, arXiv 2410.22480).

Importing osca is cheap: learning is numpy-only; LiteLLM, LangGraph and Docker load only where used
(`AllocatedSampler` is imported on first access).
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
    "BudgetError",
    "ConfigError",
    "CountMatrix",
    "CountSplit",
    "DataError",
    "OscaError",
    "SamplingConfig",
    "ScoreMatrix",
    "learn_allocation",
    "load_counts",
    "objective",
    "upper_bound",
]


def __getattr__(name: str) -> Any:
    if name == "AllocatedSampler":  # pulls in litellm: only when asked for
        from .sampler import AllocatedSampler

        return AllocatedSampler
    raise AttributeError(f"module 'osca' has no attribute {name!r}")
