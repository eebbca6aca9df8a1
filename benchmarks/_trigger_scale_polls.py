"""For trigger_scale.py: when each trigger polls against its own schedule, and how long a poll takes.

The hook call (``OpenAIBatchHook.apoll_batch`` / ``OpenAIHook.get_batch``) is wrapped to time each
poll, and the ``asyncio`` name in the trigger's module is replaced by ``SleepSpy``, which notes each
``asyncio.sleep(d)`` a trigger asks for: its next poll is due when that sleep should end, and drift =
start - due. So it holds for either trigger's schedule (the official polls on arrival and then every
interval; ours waits one interval before its first poll). The first poll of a trigger that sleeps
nothing first is due on arrival.

The arrays are preallocated (before the benchmark's "RSS before" reading), so recording adds no memory.
"""

from __future__ import annotations

import asyncio
import contextvars
import math
import time
from array import array

from _trigger_scale_stalls import pct  # type: ignore[import-not-found]

perf = time.perf_counter


class PollRecorder:
    def __init__(self, ids: list[str], offsets: list[float], capacity: int) -> None:
        self.due = dict(zip(ids, offsets, strict=True))  # absolute perf_counter times, set once t0 is known
        self.inflight: set[str] = set(ids)
        self.inflight.clear()
        self.drift = array("d", bytes(8 * capacity))
        self.rtt = array("d", bytes(8 * capacity))
        self.starts = 0
        self.ends = 0
        self.errors = 0
        self.polled: set[str] = set(ids)
        self.polled.clear()
        self.first_wait = 0.0

    def slept(self, batch_id: str, now: float, delay: float) -> None:
        """The trigger asked to sleep ``delay`` s: its next poll is due when that sleep ends."""
        self.due[batch_id] = now + max(0.0, delay)
        if batch_id not in self.polled:
            self.first_wait = max(self.first_wait, delay)

    def start(self, batch_id: str, now: float) -> None:
        if self.starts < len(self.drift):
            self.drift[self.starts] = now - self.due[batch_id]
        self.starts += 1
        self.inflight.add(batch_id)

    def end(self, batch_id: str, started: float, now: float, ok: bool) -> None:
        if self.ends < len(self.rtt):
            self.rtt[self.ends] = now - started
        self.ends += 1
        self.polled.add(batch_id)
        self.inflight.discard(batch_id)
        self.due[batch_id] = float("inf")  # until the trigger asks to sleep again
        if not ok:
            self.errors += 1

    def timed(self, original: object, is_async: bool) -> object:
        """``original`` (the hook's poll method) wrapped to record each poll's start and end."""
        if is_async:

            async def timed_aget_batch(hook: object, batch_id: str, **kwargs: object) -> object:
                started = perf()
                self.start(batch_id, started)
                ok = False
                try:
                    result = await original(hook, batch_id, **kwargs)  # type: ignore[operator]
                    ok = True
                    return result
                finally:
                    self.end(batch_id, started, perf(), ok)

            return timed_aget_batch

        def timed_get_batch(hook: object, batch_id: str) -> object:
            started = perf()
            self.start(batch_id, started)
            ok = False
            try:
                result = original(hook, batch_id)  # type: ignore[operator]
                ok = True
                return result
            finally:
                self.end(batch_id, started, perf(), ok)

        return timed_get_batch

    def figures(
        self, now: float, offsets: list[float], duration: float, interval: float, latency: float
    ) -> dict[str, object]:
        """Poll figures at ``now``; the schedule asks, from each arrival after the first wait, for one
        poll every interval + latency."""
        drift = list(self.drift[: min(self.starts, len(self.drift))])
        rtt = list(self.rtt[: min(self.ends, len(self.rtt))])
        wait = self.first_wait
        expected = sum(max(0, math.floor((duration - off - wait) / (interval + latency)) + 1) for off in offsets)
        inflight = set(self.inflight)
        overdue = [now - due for batch_id, due in list(self.due.items()) if due < now and batch_id not in inflight]
        return {
            "drift_mean_ms": (sum(drift) / len(drift) * 1e3) if drift else None,
            "drift_p99_ms": pct(drift, 0.99) * 1e3 if drift else None,
            "drift_max_ms": max(drift) * 1e3 if drift else None,
            "rtt_mean_ms": (sum(rtt) / len(rtt) * 1e3) if rtt else None,
            "rtt_p99_ms": pct(rtt, 0.99) * 1e3 if rtt else None,
            "rtt_max_ms": max(rtt) * 1e3 if rtt else None,
            "overdue_at_end": len(overdue),
            "overdue_max_ms": max(overdue, default=0.0) * 1e3,
            "polls": self.ends,
            "polls_started": self.starts,
            "polls_expected": expected,
            "poll_errors": self.errors,
            "triggers_polled": len(self.polled),
        }


class SleepSpy:
    """Stands in for ``asyncio`` in the trigger's module: notes each sleep a trigger asks for.

    That is the trigger's own schedule (poll, sleep ``poll_interval``, poll...; ours also
    waits one interval before its first poll), so drift = poll start - end of that sleep.
    The trigger's batch id comes from ``current``, set by the task that iterates its ``run()``.
    """

    def __init__(self, recorder: PollRecorder, current: contextvars.ContextVar[str]) -> None:
        self._recorder = recorder
        self._current = current

    def __getattr__(self, name: str) -> object:
        return getattr(asyncio, name)

    def sleep(self, delay: float, result: object = None) -> object:
        batch_id = self._current.get()
        if batch_id:
            self._recorder.slept(batch_id, perf(), delay)
        return asyncio.sleep(delay, result)
