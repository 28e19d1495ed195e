"""Frozen policy objects for `AllocatedSampler`: how a request is retried, when drawing stops early, how long a
call may take. Each is a small value passed in whole, as tenacity passes `stop_after_attempt(3)`, instead of a
growing list of keyword flags; `dataclasses.replace` derives a variant.

    AllocatedSampler(configs, alloc, retry=Retry(stop=stop_after_attempt(2)), early_stop=EarlyStop(wave=1),
                     deadline=Deadline(call=30, sample=10))
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from tenacity import stop_after_attempt, wait_exponential, wait_random

from .exceptions import ConfigError

__all__ = ["Deadline", "EarlyStop", "Retry", "TRANSIENT_ERRORS", "FATAL_ERRORS"]

TRANSIENT_ERRORS = ("RateLimitError", "Timeout", "APIConnectionError", "InternalServerError",
                    "ServiceUnavailableError", "BadGatewayError")
"""LiteLLM exception types a retry may cure."""

FATAL_ERRORS = ("ContextWindowExceededError", "AuthenticationError", "BadRequestError", "NotFoundError",
                "PermissionDeniedError", "ContentPolicyViolationError", "UnsupportedParamsError")
"""LiteLLM exception types every sample of a request shares: the call stops at the first one (issue 11)."""


def _default_wait() -> Any:
    return wait_exponential(multiplier=0.5, max=20) + wait_random(0, 0.5)


@dataclass(frozen=True)
class Retry:
    """Retry of one request on a transient error (rate limit, timeout, connection, 5xx); the sampler turns the
    client's own retries off (`num_retries=0`, `max_retries=0`), so this is the only retry loop.

    Example:
        >>> Retry(stop=stop_after_attempt(2), sleep=sleeps.append)   # tests record the waits instead
    """

    stop: Any = field(default_factory=lambda: stop_after_attempt(4))
    """A tenacity stop strategy."""
    wait: Any = field(default_factory=_default_wait)
    """A tenacity wait strategy."""
    sleep: Callable[[float], Any] = asyncio.sleep
    """What waits between attempts (tests inject a recorder)."""


@dataclass(frozen=True)
class EarlyStop:
    """Draw in waves (round robin over configurations, largest allocation first) and stop once a candidate
    verifies; the samples not drawn are reported as `unspent`."""

    wave: int | None = None
    """Samples per wave; None: one per configuration in use."""

    def __post_init__(self) -> None:
        if self.wave is not None and self.wave < 1:
            raise ConfigError(f"an early-stop wave must hold at least one sample, got {self.wave}")


@dataclass(frozen=True)
class Deadline:
    """Time limits in seconds that hold whatever the provider does; None: no limit.

    A call's own `timeout=` argument (LiteLLM's) sets `call` for that call. When the call's deadline passes, the
    requests still out are cancelled and selection runs over what arrived.
    """

    call: float | None = None
    """The whole call: drawing, retries and verification."""
    sample: float | None = None
    """One request, each attempt (passed to the provider as its `timeout`)."""

    def __post_init__(self) -> None:
        for name in ("call", "sample"):
            value = getattr(self, name)
            if value is not None and not value > 0:
                raise ConfigError(f"a {name} deadline must be a positive number of seconds, got {value!r}")
