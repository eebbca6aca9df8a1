"""For trigger_scale.py: API requests the fake server received in each poll interval of a run.

A thread of the trigger process reads the fake server's counters (``GET /_fake/stats``, a
control route that is neither counted nor delayed) at t0, t0 + interval, t0 + 2 x interval...
A thread and not the event loop, so a blocked loop cannot shift the samples. Reads of a batch
are the list pages (``GET /v1/batches``) plus the single GETs (``GET /v1/batches/{batch_id}``).

Intervals from the third on are "steady": triggers arrive over the first interval and poll
first between 0.8 and 1 interval after arriving, so the first two intervals hold the ramp
(and, for the shared poller, the walk that maps where the batches are).
"""

from __future__ import annotations

import itertools
import json
import threading
import time
import urllib.request

ROUTES = ("GET /v1/batches", "GET /v1/batches/{batch_id}")
RAMP_INTERVALS = 2


def batch_reads(root: str) -> int:
    with urllib.request.urlopen(f"{root}/_fake/stats", timeout=30) as response:
        requests = json.loads(response.read())["requests"]
    return sum(int(requests.get(route, 0)) for route in ROUTES)


class IntervalSampler:
    def __init__(self, root: str, interval: float, t0: float, duration: float) -> None:
        self.root, self.interval, self.t0, self.duration = root, interval, t0, duration
        self.samples: list[int] = []
        self._thread = threading.Thread(target=self._run, name="bench-interval-requests", daemon=True)

    def start(self) -> IntervalSampler:
        self._thread.start()
        return self

    def _run(self) -> None:
        k = 0
        while k * self.interval <= self.duration + 1e-6:
            time.sleep(max(0.0, self.t0 + k * self.interval - time.perf_counter()))
            try:
                self.samples.append(batch_reads(self.root))
            except OSError:
                return
            k += 1

    def figures(self) -> dict[str, object]:
        counts = [b - a for a, b in itertools.pairwise(self.samples)]
        steady = counts[RAMP_INTERVALS:]
        return {
            "requests_per_interval": counts,
            "requests_per_interval_max": max(steady) if steady else None,
            "requests_per_interval_mean": sum(steady) / len(steady) if steady else None,
            "requests_per_interval_ramp_max": max(counts[:RAMP_INTERVALS]) if counts else None,
        }
