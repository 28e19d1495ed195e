"""What sampling spent, per configuration and per call site, and the caps checked before each dispatch."""

from __future__ import annotations

import threading
from dataclasses import dataclass, field

from .exceptions import BudgetError

__all__ = ["Caps", "Ledger", "Spend"]


@dataclass
class Spend:
    """Samples drawn from the model (cache hits are counted apart), tokens and dollars."""

    samples: int = 0
    cached: int = 0
    failed: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    cost: float = 0.0

    def add(self, other: Spend) -> None:
        for name in self.__dataclass_fields__:
            setattr(self, name, getattr(self, name) + getattr(other, name))

    @property
    def tokens(self) -> int:
        return self.prompt_tokens + self.completion_tokens


@dataclass(frozen=True)
class Caps:
    """Limits on new (uncached) spending; `None` is no limit."""

    samples: int | None = None
    tokens: int | None = None
    dollars: float | None = None

    def __post_init__(self) -> None:
        for name, least in (("samples", 1), ("tokens", 1), ("dollars", 1e-12)):
            value = getattr(self, name)
            if value is not None and value < least:
                raise BudgetError(f"a cap on {name} must allow at least one sample, got {value}")

    def exhausted(self, spent: Spend) -> str | None:
        """Why nothing more may be spent after `spent`, or None while every cap still has room."""
        if self.samples is not None and spent.samples >= self.samples:
            return f"sample cap {self.samples} reached ({spent.samples} used)"
        if self.tokens is not None and spent.tokens >= self.tokens:
            return f"token cap {self.tokens} reached ({spent.tokens} used)"
        if self.dollars is not None and spent.cost >= self.dollars:
            return f"dollar cap {self.dollars} reached (${spent.cost:.4f} spent)"
        return None


@dataclass
class Ledger:
    """Running totals keyed by (call site, configuration); thread-safe. Pass one in to share it across
    samplers; there is no global ledger."""

    caps: Caps = field(default_factory=Caps)
    entries: dict[tuple[str, str], Spend] = field(default_factory=dict)
    _reserved: int = field(default=0, repr=False)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def __getstate__(self) -> dict:
        state = dict(self.__dict__)
        del state["_lock"]  # locks do not pickle (samplers travel to Ray workers)
        return state

    def __setstate__(self, state: dict) -> None:
        self.__dict__.update(state, _lock=threading.Lock())

    def record(self, call_site: str, config: str, spend: Spend) -> None:
        with self._lock:
            self.entries.setdefault((call_site, config), Spend()).add(spend)

    def total(self, *, call_site: str | None = None, config: str | None = None) -> Spend:
        with self._lock:
            return self._sum(call_site, config)

    def _sum(self, call_site: str | None = None, config: str | None = None) -> Spend:
        """Totals over the matching entries; the caller holds the lock."""
        out = Spend()
        for (site, cfg), spend in self.entries.items():
            if (call_site is None or site == call_site) and (config is None or cfg == config):
                out.add(spend)
        return out

    def reserve(self, samples: int) -> tuple[int, str | None]:
        """Claim up to `samples` for a request about to be dispatched: (granted, why not all).

        Claims count against the sample cap until `release`d, so concurrent requests cannot overshoot it; token
        and dollar caps are known only after a call and stop further dispatch once reached.
        """
        with self._lock:
            spent, caps = self._sum(), self.caps
            spent.samples += self._reserved
            why = caps.exhausted(spent)
            if why is not None:
                return 0, why
            granted = samples
            if caps.samples is not None:
                granted = min(samples, caps.samples - spent.samples)
            self._reserved += granted
        why = None if granted == samples else f"sample cap {caps.samples} reached"
        return granted, why

    def release(self, samples: int) -> None:
        """Return a reservation once its request has recorded what it actually spent."""
        with self._lock:
            self._reserved -= samples
