"""What sampling spent, per configuration and per call site, and the caps that bind before each dispatch.

Dollars are `dollars` everywhere (budget units, a configuration's `cost`, are another thing, issue 11).
"""

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
    dollars: float = 0.0

    def add(self, other: Spend, times: int = 1) -> None:
        """Add `other` (`times` times over) to this spend in place."""
        for name in self.__dataclass_fields__:
            setattr(self, name, getattr(self, name) + times * getattr(other, name))

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
        if self.dollars is not None and spent.dollars >= self.dollars:
            return f"dollar cap {self.dollars} reached (${spent.dollars:.4f} spent)"
        return None

    def affordable(self, spent: Spend, worst: Spend) -> tuple[int | None, str | None]:
        """How many more samples fit when each may spend up to `worst` (None: no cap limits them), and which
        cap limits them."""
        limits: list[tuple[int, str]] = []
        if self.samples is not None:
            left = self.samples - spent.samples
            limits.append((left, f"sample cap {self.samples} reached ({spent.samples} used or reserved)"))
        if self.tokens is not None and worst.tokens > 0:
            left = self.tokens - spent.tokens
            limits.append((left // worst.tokens, f"token cap {self.tokens}: a sample may use up to {worst.tokens} "
                                                 f"tokens and {max(left, 0)} are left"))
        if self.dollars is not None and worst.dollars > 0:
            left = self.dollars - spent.dollars
            limits.append((int(left / worst.dollars + 1e-9), f"dollar cap {self.dollars}: a sample may cost up "
                           f"to ${worst.dollars:.6f} and ${max(left, 0):.6f} is left"))
        if not limits:
            return None, None
        count, why = min(limits)
        return max(count, 0), why


@dataclass
class Ledger:
    """Running totals keyed by (call site, configuration); thread-safe. Pass one in to share it across
    samplers; there is no global ledger."""

    caps: Caps = field(default_factory=Caps)
    entries: dict[tuple[str, str], Spend] = field(default_factory=dict)
    _reserved: Spend = field(default_factory=Spend, repr=False)
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

    def reserve(self, samples: int, worst: Spend | None = None) -> tuple[int, str | None]:
        """Claim up to `samples` for a request about to be dispatched: (granted, why not all).

        Each sample is reserved at its worst case `worst` (prompt tokens plus the most it may generate, priced),
        and claims count against every cap until `release`d, so concurrent requests can never overshoot one.
        A cap that cannot afford even the worst case of what it has left says so in the reason.
        """
        worst = worst or Spend(samples=1)
        with self._lock:
            spent = self._sum()
            spent.add(self._reserved)
            why = self.caps.exhausted(spent)
            if why is not None:
                return 0, why
            fits, why = self.caps.affordable(spent, worst)
            granted = samples if fits is None else min(samples, fits)
            self._reserved.add(worst, granted)
        return granted, (None if granted == samples else why)

    def release(self, samples: int, worst: Spend | None = None) -> None:
        """Return a reservation (as `reserve`d) once its request has recorded what it actually spent."""
        worst = worst or Spend(samples=1)
        with self._lock:
            self._reserved.add(worst, -samples)

    @property
    def reserved(self) -> Spend:
        """What requests in flight have reserved and not yet released."""
        with self._lock:
            return Spend(**vars(self._reserved))
