"""Seeded, deterministic fault decisions for API requests.

Two kinds of fault: rates (each matching request draws from a seeded generator and may get a
429, 503 or 500) and counted rules (the next ``n`` matching requests fail with a status or
lose their connection before or after the work is done). Both can be narrowed to an HTTP
method and a path prefix. This module only decides; the ASGI front door applies decisions.
Control routes (``/_fake/...``) never reach it.
"""

from __future__ import annotations

import random
import threading
from collections import Counter
from collections.abc import Collection
from dataclasses import dataclass, field
from typing import Literal

Latency = float | tuple[float, float]
DropWhen = Literal["before", "after"]


@dataclass(frozen=True)
class RequestFilter:
    """Which requests a fault applies to; ``None`` matches everything."""

    methods: frozenset[str] | None = None
    path_prefix: str | None = None

    @classmethod
    def of(cls, methods: str | Collection[str] | None, path_prefix: str | None) -> RequestFilter:
        if isinstance(methods, str):
            methods = [methods]
        return cls(frozenset(m.upper() for m in methods) if methods is not None else None, path_prefix)

    def matches(self, method: str, path: str) -> bool:
        if self.methods is not None and method not in self.methods:
            return False
        return self.path_prefix is None or path.startswith(self.path_prefix)


@dataclass(frozen=True)
class FaultRates:
    rate_429: float = 0.0
    rate_503: float = 0.0
    rate_500: float = 0.0
    retry_after: float | None = 1
    """``Retry-After`` seconds sent with injected 429s; ``None`` sends no hint."""
    retry_after_ms: int | None = None
    """If set, 429s carry ``retry-after-ms`` (milliseconds) instead of ``Retry-After``."""
    latency: Latency = 0.0
    """Seconds added to each matching request: fixed, or ``(low, high)`` drawn uniformly."""
    where: RequestFilter = field(default_factory=RequestFilter)

    def __post_init__(self) -> None:
        rates = (self.rate_429, self.rate_503, self.rate_500)
        if any(rate < 0 for rate in rates) or sum(rates) > 1:
            raise ValueError("fault rates must be >= 0 and sum to at most 1")


@dataclass
class CountedRule:
    remaining: int
    kind: Literal["status", "drop_before", "drop_after"]
    where: RequestFilter
    status: int = 503
    retry_after: float | None = None


@dataclass(frozen=True)
class Decision:
    """What to do to one request. ``kind`` is None when it passes untouched (apart from latency)."""

    latency: float = 0.0
    kind: str | None = None
    status: int | None = None
    retry_after: float | None = None
    retry_after_ms: int | None = None


class FaultInjector:
    def __init__(self, seed: int) -> None:
        self._seed = seed
        self._lock = threading.Lock()
        self._rng = random.Random(seed)
        self._rates = FaultRates()
        self._rules: list[CountedRule] = []
        self._injected: Counter[str] = Counter()

    def set_rates(self, rates: FaultRates) -> None:
        with self._lock:
            self._rates = rates

    def add_rule(self, rule: CountedRule) -> None:
        with self._lock:
            self._rules.append(rule)

    def clear(self) -> None:
        """Remove every fault and restart the seeded sequence; the counts of injected faults are kept."""
        with self._lock:
            self._rates = FaultRates()
            self._rules.clear()
            self._rng = random.Random(self._seed)

    def reset(self) -> None:
        self.clear()
        with self._lock:
            self._injected.clear()

    def counts(self) -> dict[str, int]:
        """Faults injected so far, per kind (``rate_429``, ``fail_next``, ``drop_after``, ``latency``...)."""
        with self._lock:
            return dict(self._injected)

    def decide(self, method: str, path: str) -> Decision:
        with self._lock:
            decision = self._decide(method, path)
            if decision.kind is not None:
                self._injected[decision.kind] += 1
            if decision.latency > 0:
                self._injected["latency"] += 1
            return decision

    def _draw_latency(self, latency: Latency) -> float:
        if isinstance(latency, tuple):
            return self._rng.uniform(*latency)
        return float(latency)

    def _decide(self, method: str, path: str) -> Decision:
        rates = self._rates
        latency = 0.0
        if rates.where.matches(method, path):
            latency = self._draw_latency(rates.latency)
        for rule in self._rules:
            if rule.remaining > 0 and rule.where.matches(method, path):
                rule.remaining -= 1
                if rule.kind != "status":
                    return Decision(latency, rule.kind)
                return Decision(latency, "fail_next", rule.status, rule.retry_after)
        self._rules = [rule for rule in self._rules if rule.remaining > 0]
        if not rates.where.matches(method, path) or not (rates.rate_429 or rates.rate_503 or rates.rate_500):
            return Decision(latency)
        draw = self._rng.random()
        if draw < rates.rate_429:
            if rates.retry_after_ms is not None:
                return Decision(latency, "rate_429", 429, retry_after_ms=rates.retry_after_ms)
            return Decision(latency, "rate_429", 429, rates.retry_after)
        if draw < rates.rate_429 + rates.rate_503:
            return Decision(latency, "rate_503", 503)
        if draw < rates.rate_429 + rates.rate_503 + rates.rate_500:
            return Decision(latency, "rate_500", 500)
        return Decision(latency)
