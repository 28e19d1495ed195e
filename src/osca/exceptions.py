"""The exceptions osca raises.

    OscaError
     ├── ConfigError       bad configuration, unknown configuration name
     ├── DataError         malformed counts / allocation files, inconsistent matrices
     ├── BudgetError       a budget that cannot be spent (<= 0, smaller than any configuration's cost)
     ├── SamplingError     every candidate of a call failed (chained to the last cause; `.errors` by type)
     └── SandboxError      the sandbox could not run a job (not: the candidate failed its tests)
          ├── SandboxUnavailable   no Docker daemon answers
          └── ImageMissing         the sandbox image is not built (the message names the command that builds it)
"""

from __future__ import annotations

__all__ = ["BudgetError", "ConfigError", "DataError", "ImageMissing", "OscaError", "SamplingError", "SandboxError",
           "SandboxUnavailable"]


class OscaError(Exception):
    """Base class: catching it catches every error osca raises on purpose."""


class ConfigError(OscaError, ValueError):
    """A sampling configuration is invalid or a configuration name is unknown."""


class DataError(OscaError, ValueError):
    """Input data (counts, scores, allocations) is malformed or inconsistent."""


class BudgetError(OscaError, ValueError):
    """The sample budget is not a positive amount that at least one configuration fits into."""


class SamplingError(OscaError):
    """No candidate of a sampled call succeeded; `candidates` holds every attempt and its error, `errors` the
    exceptions behind them by type name (LiteLLM's types), and `__cause__` is the last of them.

    A failure every request shares (context window, authentication, bad request) is not wrapped: the sampler
    re-raises LiteLLM's own exception, with `candidates` attached to it.
    """

    def __init__(self, message: str, candidates: list | None = None) -> None:
        super().__init__(message)
        self.candidates = candidates or []

    @property
    def errors(self) -> dict[str, list[BaseException]]:
        """The candidates' exceptions grouped by type name, e.g. `{"RateLimitError": [...]}`."""
        out: dict[str, list[BaseException]] = {}
        for c in self.candidates:
            exception = getattr(c, "exception", None)
            if exception is not None:
                out.setdefault(type(exception).__name__, []).append(exception)
        return out


class SandboxError(OscaError):
    """The sandbox itself failed (daemon, image, container start); says nothing about the candidate."""


class SandboxUnavailable(SandboxError):
    """No Docker daemon answers; the message says how to start one."""


class ImageMissing(SandboxError):
    """The sandbox image is absent; osca never pulls implicitly, the message names the build command."""
