"""For trigger_scale.py: how long the trigger process's event loop stalls, and the collector's share.

A monitor task sleeps 10 ms in a loop and records how late it wakes; a stall still going on when
the window closes counts with its length so far. Garbage-collector pauses (``gc.callbacks``) also
stall the loop, so they are recorded too: the stalls with the pauses inside them taken out separate
CPython's collector from everything else (our code, httpx, the loop).

The arrays are preallocated (before the benchmark's "RSS before" reading), so sampling adds no memory.
"""

from __future__ import annotations

import asyncio
import bisect
import time
from array import array

MONITOR_TICK = 0.010
BLOCKED_WARNING_LATE = 0.100
"""Airflow's triggerer warns when its 0.1 s watchdog sleep takes over 0.2 s
(``[triggerer] blocked_main_thread_warning_threshold``): a stall of 100 ms or more."""
MAX_GC_SPANS = 100_000

perf = time.perf_counter


def pct(values: list[float], q: float) -> float:
    if not values:
        return 0.0
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def overlap(spans: list[tuple[float, float]], start: float, end: float) -> float:
    """Seconds of [start, end] covered by the (sorted, disjoint) spans."""
    covered = 0.0
    for s, e in spans[max(0, bisect.bisect_left(spans, (start, start)) - 1) :]:
        if s > end:
            break
        covered += max(0.0, min(e, end) - max(s, start))
    return covered


class GcPauses:
    """A ``gc.callbacks`` entry: the longest and total pause, full collections, the spans over 1 ms."""

    def __init__(self) -> None:
        self.start = 0.0
        self.max = 0.0
        self.total = 0.0
        self.full = 0
        self.spans: list[tuple[float, float]] = []  # pauses over 1 ms, to tell GC stalls from the others

    def on_gc(self, phase: str, info: dict) -> None:
        if phase == "start":
            self.start = perf()
        else:
            pause = perf() - self.start
            self.total += pause
            self.max = max(self.max, pause)
            self.full += info.get("generation") == 2
            if pause > 0.001 and len(self.spans) < MAX_GC_SPANS:
                self.spans.append((self.start, self.start + pause))

    def figures(self) -> dict[str, float]:
        return {"gc_max_ms": self.max * 1e3, "gc_total_s": self.total, "gc_full_collections": self.full}


class StallMonitor:
    """The 10 ms sleeper; ``run()`` is its task, ``figures()`` reads it from another thread."""

    def __init__(self, capacity: int) -> None:
        self.late = array("d", bytes(8 * capacity))
        self.tick_at = array("d", bytes(8 * capacity))
        self.ticks = 0
        self.tick_started = 0.0

    async def run(self) -> None:
        while True:
            self.tick_started = perf()
            await asyncio.sleep(MONITOR_TICK)
            if self.ticks < len(self.late):
                self.late[self.ticks] = perf() - self.tick_started - MONITOR_TICK
                self.tick_at[self.ticks] = self.tick_started
            self.ticks += 1

    def figures(self, now: float, gc_pauses: GcPauses) -> dict[str, float]:
        """Stall figures at ``now``; the pauses in ``gc_pauses`` are taken out for the no-GC ones."""
        ticks = min(self.ticks, len(self.late))
        late = list(self.late[:ticks])
        spans = list(zip(self.tick_at[:ticks], late, strict=True))
        ongoing = now - self.tick_started - MONITOR_TICK
        if ongoing > 0:
            late.append(ongoing)
            spans.append((self.tick_started, ongoing))
        pauses = sorted(gc_pauses.spans)
        no_gc = [max(0.0, lag - overlap(pauses, start, start + MONITOR_TICK + lag)) for start, lag in spans]
        return {
            "stall_max_ms": max(late, default=0.0) * 1e3,
            "stall_p99_ms": pct(late, 0.99) * 1e3,
            "stalls_over_20ms": sum(1 for x in late if x > 0.020),
            "stalls_over_100ms": sum(1 for x in late if x >= BLOCKED_WARNING_LATE),
            "stall_max_nogc_ms": max(no_gc, default=0.0) * 1e3,
            "stall_p99_nogc_ms": pct(no_gc, 0.99) * 1e3,
            "monitor_ticks": len(late),
        }
