"""The exceptions osca raises.

    OscaError
     ├── ConfigError       bad configuration, unknown configuration name
     ├── DataError         malformed counts / allocation files, inconsistent matrices
     └── BudgetError       a budget that cannot be spent (<= 0, smaller than any configuration's cost)

Later layers (sampling, sandboxes, verification) add their own subclasses of `OscaError` here.
"""

from __future__ import annotations

__all__ = ["BudgetError", "ConfigError", "DataError", "OscaError"]


class OscaError(Exception):
    """Base class: catching it catches every error osca raises on purpose."""


class ConfigError(OscaError, ValueError):
    """A sampling configuration is invalid or a configuration name is unknown."""


class DataError(OscaError, ValueError):
    """Input data (counts, scores, allocations) is malformed or inconsistent."""


class BudgetError(OscaError, ValueError):
    """The sample budget is not a positive amount that at least one configuration fits into."""
