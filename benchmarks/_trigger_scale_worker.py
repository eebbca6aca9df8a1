"""For trigger_scale.py: one measured run, N triggers of one implementation in one event loop.

This is the body of the ``--worker`` subprocess (a fresh process per run, so runs do not share a
heap, a collector history or connection pools). It warms the hook up with one poll, takes "RSS
before", starts the triggers as they would arrive in a triggerer, iterates their ``run()`` for the
window, then cancels them. A watchdog thread takes every figure at the end of the window and writes
them to ``--out``, so a loop blocked by the baseline cannot stretch the window (if the loop is still
blocked ``--grace`` seconds later, the process leaves at once: the figures are written).
"""

from __future__ import annotations

import argparse
import asyncio
import contextvars
import gc
import json
import math
import os
import threading
import time
from pathlib import Path

import psutil
from _interval_requests import IntervalSampler  # type: ignore[import-not-found]
from _trigger_scale_impls import load_impl  # type: ignore[import-not-found]
from _trigger_scale_polls import PollRecorder, SleepSpy  # type: ignore[import-not-found]
from _trigger_scale_stalls import MONITOR_TICK, GcPauses, StallMonitor  # type: ignore[import-not-found]

IDLE_PROBE = 2.0
"""Seconds the process runs with no trigger first, to measure its own idle CPU (monitor, loop)."""

perf = time.perf_counter


def worker(args: argparse.Namespace) -> None:
    impl_name, n, interval, duration, latency = args.worker, args.n_one, args.poll_interval, args.duration, args.latency
    ids = json.loads(Path(args.ids).read_text())[-n:]  # the newest n, oldest first: recent batches
    out = Path(args.out)
    proc = psutil.Process()
    impl = load_impl(impl_name, interval, latency, args.floor_objects, ids[0])

    offsets = [i * interval / n for i in range(n)] if args.arrival == "spread" else [0.0] * n
    per_trigger = math.floor(duration / (interval + latency)) + 2
    # Allocated before the "RSS before" reading, so recording adds no memory per trigger.
    rec = PollRecorder(ids, offsets, capacity=n * per_trigger + 1000)
    stalls = StallMonitor(capacity=int(duration / MONITOR_TICK) + 1000)
    gc_pauses = GcPauses()
    timed = rec.timed(getattr(impl.hook, impl.method), impl.is_async)
    current: contextvars.ContextVar[str] = contextvars.ContextVar("batch_id", default="")
    impl.module.asyncio = SleepSpy(rec, current)  # type: ignore[attr-defined]
    events: dict[str, int] = {}
    result: dict[str, object] = {}
    done = threading.Event()

    async def one(trigger: object, batch_id: str) -> None:
        current.set(batch_id)
        async for event in trigger.run():  # type: ignore[attr-defined]
            status = str(event.payload.get("status"))
            events[status] = events.get(status, 0) + 1

    def snapshot(t0: float, cpu0: float, rss0: int) -> None:
        """At the end of the window, from the watchdog thread (so a blocked loop cannot delay it)."""
        now = perf()
        gc.callbacks.remove(gc_pauses.on_gc)  # a collection run by this thread is no pause of the window
        cpu = time.process_time() - cpu0
        rss = proc.memory_info().rss
        polls = rec.ends
        result.update(
            impl=impl_name,
            n=n,
            floor_objects=args.floor_objects if impl_name == "floor" else None,
            window_s=now - t0,
            **stalls.figures(now, gc_pauses),
            **rec.figures(now, offsets, duration, interval, latency),
            cpu_s=cpu,
            cpu_per_poll_ms=(cpu / polls * 1e3) if polls else None,
            cpu_per_poll_net_ms=((cpu - result["idle_cpu_per_s"] * (now - t0)) / polls * 1e3) if polls else None,  # type: ignore[operator]
            rss_before_mb=rss0 / 2**20,
            rss_after_mb=rss / 2**20,
            mem_per_trigger_kb=(rss - rss0) / n / 1024,
            events=dict(events),
            **gc_pauses.figures(),
        )
        out.write_text(json.dumps(result))

    def count_objects(objects0: int) -> None:
        # After the figures above (listing every object takes a while): GC-tracked objects per trigger.
        result["objects_per_trigger"] = (len(gc.get_objects()) - objects0) / n
        out.write_text(json.dumps(result))

    async def main() -> None:
        await impl.warm_up()
        setattr(impl.hook, impl.method, timed)
        if args.gc_threshold:
            gc.set_threshold(*(int(x) for x in args.gc_threshold.split(",")))
        if args.gc_freeze:
            gc.collect()
            gc.freeze()
        end_time = time.time() + 3600
        gc.collect()
        rss0 = proc.memory_info().rss
        objects0 = len(gc.get_objects())
        triggers = [impl.make(batch_id, end_time) for batch_id in ids]
        loop = asyncio.get_running_loop()
        stop = asyncio.Event()
        tasks: list[asyncio.Task[None]] = []
        monitor_task = asyncio.create_task(stalls.run())
        await asyncio.sleep(0.05)  # the monitor is running before the first trigger arrives
        idle_cpu, idle_wall = time.process_time(), perf()
        await asyncio.sleep(IDLE_PROBE)  # the process's own CPU with no trigger (monitor, loop)
        result["idle_cpu_per_s"] = (time.process_time() - idle_cpu) / (perf() - idle_wall)
        stalls.ticks = 0
        t0 = perf()
        cpu0 = time.process_time()
        gc.callbacks.append(gc_pauses.on_gc)
        rec.due = {batch_id: t0 + off for batch_id, off in zip(ids, offsets, strict=True)}

        def watchdog() -> None:
            time.sleep(max(0.0, t0 + duration - perf()))
            snapshot(t0, cpu0, rss0)
            result.update(sampler.figures())
            count_objects(objects0)
            loop.call_soon_threadsafe(stop.set)
            if not done.wait(args.grace):
                # The loop is still blocked (baseline at large N): the figures are written; leave now.
                os._exit(0)

        threading.Thread(target=watchdog, name="bench-watchdog", daemon=True).start()
        sampler = IntervalSampler(args.server_root, interval, t0, duration).start()

        async def spawn() -> None:
            # Triggers arrive spread over the first poll interval, as they would in a triggerer.
            for trigger, batch_id, off in zip(triggers, ids, offsets, strict=True):
                delay = t0 + off - perf()
                if delay > 0.001:
                    await asyncio.sleep(delay)
                if stop.is_set():
                    return
                tasks.append(asyncio.create_task(one(trigger, batch_id)))

        spawner = asyncio.create_task(spawn())
        await stop.wait()
        stopping = perf()
        spawner.cancel()
        for task in [*tasks, monitor_task]:
            task.cancel()
        await asyncio.gather(spawner, monitor_task, *tasks, return_exceptions=True)
        result["stop_s"] = perf() - stopping
        out.write_text(json.dumps(result))

    if args.profile:
        # cProfile (py-spy is not available; a sampling thread is biased towards calls that release the GIL).
        import cProfile

        profiler = cProfile.Profile()
        profiler.enable()
        try:
            asyncio.run(main())
        finally:
            profiler.disable()
            profiler.dump_stats(args.profile)
    else:
        asyncio.run(main())
    done.set()
