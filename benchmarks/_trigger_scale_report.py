"""For trigger_scale.py: the tables it prints, its BENCH_JSON figures and the issue's targets.

Ratios are ours / baseline (below 1 = ours smaller). The control ("floor") has its own column in the
table and its own rows in the figures, where it matters: the largest N. The targets (issue 11) are
printed met or MISSED from the same run's figures.
"""

from __future__ import annotations

import math

STALL_TARGET_MS = 20.0
TARGET_N = 5000


def fmt(value: object, digits: int = 1) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:,.{digits}f}"
    return f"{value:,}" if isinstance(value, int) else str(value)


ROWS = [
    ("longest loop stall", "stall_max_ms", "ms", 1),
    ("loop stall p99", "stall_p99_ms", "ms", 1),
    ("monitor wake-ups late > 20 ms", "stalls_over_20ms", "", 0),
    ("longest stall, GC pauses taken out", "stall_max_nogc_ms", "ms", 1),
    ("stall p99, GC pauses taken out", "stall_p99_nogc_ms", "ms", 1),
    ("poll drift mean", "drift_mean_ms", "ms", 1),
    ("poll drift p99", "drift_p99_ms", "ms", 1),
    ("poll drift max", "drift_max_ms", "ms", 1),
    ("polls overdue at window end", "overdue_at_end", "", 0),
    ("oldest overdue poll at window end", "overdue_max_ms", "ms", 1),
    ("poll round trip mean", "rtt_mean_ms", "ms", 1),
    ("poll round trip p99", "rtt_p99_ms", "ms", 1),
    ("poll round trip max", "rtt_max_ms", "ms", 1),
    ("polls done", "polls", "", 0),
    ("polls done / scheduled", "schedule_pct", "%", 1),
    ("triggers that polled", "triggers_polled", "", 0),
    ("poll errors", "poll_errors", "", 0),
    ("server batch reads (pages + GETs)", "server_polls", "", 0),
    ("API requests per interval, steady max", "requests_per_interval_max", "", 0),
    ("API requests per interval, steady mean", "requests_per_interval_mean", "", 1),
    ("API requests, first 2 intervals max", "requests_per_interval_ramp_max", "", 0),
    ("loop stalls >= 100 ms (Airflow warns)", "stalls_over_100ms", "", 0),
    ("fake server CPU (of 1 core)", "server_cpu_pct", "%", 0),
    ("longest GC pause", "gc_max_ms", "ms", 1),
    ("full (gen 2) GC runs", "gc_full_collections", "", 0),
    ("time in GC", "gc_total_s", "s", 2),
    ("GC-tracked objects per trigger", "objects_per_trigger", "", 0),
    ("CPU of the trigger process", "cpu_s", "s", 2),
    ("CPU per poll", "cpu_per_poll_ms", "ms", 3),
    ("CPU per poll, idle process CPU taken out", "cpu_per_poll_net_ms", "ms", 3),
    ("memory per trigger", "mem_per_trigger_kb", "KiB", 1),
    ("RSS at end of window", "rss_after_mb", "MiB", 0),
]


def print_table(n: int, results: dict[str, dict]) -> None:
    ours, base, floor = results.get("ours"), results.get("baseline"), results.get("floor")
    print(f"\nN = {n:,} triggers, one event loop")
    print(f"  {'figure':34s} {'ours':>12s} {'baseline':>12s} {'ours/base':>10s} {'control':>12s}")
    for label, key, unit, digits in ROWS:
        a = ours.get(key) if ours else None
        b = base.get(key) if base else None
        c = floor.get(key) if floor else None
        ratio = a / b if isinstance(a, (int, float)) and isinstance(b, (int, float)) and b else None
        name = f"{label} ({unit})" if unit else label
        print(f"  {name:34s} {fmt(a, digits):>12s} {fmt(b, digits):>12s} {fmt(ratio, 3):>10s} {fmt(c, digits):>12s}")
    if floor:
        extra_objects = floor["floor_objects"]
        print(f"  control: a trigger with no HTTP request, {extra_objects} extra objects held (_floor_trigger.py)")
    for impl, res in results.items():
        extra = f"window {res['window_s']:.1f} s, wall {res['wall_s']:.1f} s, events {res.get('events')}"
        if res.get("note"):
            extra += f"; {res['note']}"
        print(f"  {impl}: {extra}")


def figures_for(n: int, results: dict[str, dict], arrival: str) -> list[dict]:
    ours, base = results.get("ours"), results.get("baseline")
    specs = [
        ("API requests per poll interval (steady, max)", "requests_per_interval_max", "", 0),
        ("longest event-loop stall", "stall_max_ms", "ms", 2),
        ("longest event-loop stall, GC pauses taken out", "stall_max_nogc_ms", "ms", 2),
        ("event-loop stall p99", "stall_p99_ms", "ms", 2),
        ("GC-tracked objects per waiting trigger", "objects_per_trigger", "", 0),
        ("poll drift mean", "drift_mean_ms", "ms", 2),
        ("poll drift max", "drift_max_ms", "ms", 1),
        ("poll round trip p99", "rtt_p99_ms", "ms", 1),
        ("polls done / scheduled", "schedule_pct", "%", 1),
        ("CPU per poll", "cpu_per_poll_ms", "ms", 3),
        ("CPU per poll, idle process CPU taken out", "cpu_per_poll_net_ms", "ms", 3),
        ("memory per trigger", "mem_per_trigger_kb", "KiB", 1),
    ]
    figures = []
    for label, key, unit, digits in specs:
        a = ours.get(key) if ours else None
        b = base.get(key) if base else None
        ratio = round(a / b, 4) if isinstance(a, (int, float)) and isinstance(b, (int, float)) and b else None
        target = "context"
        if key == "stall_max_ms" and n == 1000:
            target = f"ours < {STALL_TARGET_MS:g} ms over the window, none >= 100 ms"
        elif key == "stall_max_ms" and n == TARGET_N:
            target = "ours <= 1.25x the control (row below)"
        elif key == "stall_p99_ms" and n == TARGET_N:
            target = "ours < 5 ms"
        elif key == "stall_max_nogc_ms":
            target = "context: the stall without CPython's garbage-collector pauses"
        if key == "requests_per_interval_max" and n in (1000, TARGET_N):
            target = f"ours <= {math.ceil(n / 100) + 5} (ceil(N/100) + 5)"
        window = ours.get("window_s") if ours else None
        figures.append(
            {
                "figure": f"{label}, N={n}"
                + (f", {window:.0f} s" if window else "")
                + (", burst arrival" if arrival == "burst" else ""),
                "ours": round(a, digits) if isinstance(a, float) else a,
                "baseline": round(b, digits) if isinstance(b, float) else b,
                "unit": unit,
                "ratio": ratio,
                "target": target,
            }
        )
    floor = results.get("floor")
    if floor:
        control = f"control: no HTTP, {floor['floor_objects']} extra objects per trigger"
        for label, key, unit, digits in (
            ("longest event-loop stall", "stall_max_ms", "ms", 2),
            ("full GC runs", "gc_full_collections", "", 0),
            ("GC-tracked objects per trigger", "objects_per_trigger", "", 0),
        ):
            value = floor.get(key)
            figures.append(
                {
                    "figure": f"{label}, {control}, N={n}",
                    "ours": round(value, digits) if isinstance(value, float) else value,
                    "baseline": None,
                    "unit": unit,
                    "ratio": None,
                    "target": "context: what the loop and the collector cost with no trigger code",
                }
            )
    return figures


def print_targets(all_results: dict[int, dict[str, dict]]) -> None:
    """The issue's targets, each met or MISSED, from this run's figures."""

    def verdict(ok: bool) -> str:
        return "met" if ok else "MISSED"

    print("\ntargets (same run; Airflow imported, collector on):")
    for n in (1000, TARGET_N):
        ours = all_results.get(n, {}).get("ours")
        if ours and ours.get("requests_per_interval_max") is not None:
            limit, got = math.ceil(n / 100) + 5, ours["requests_per_interval_max"]
            print(f"  N={n}: API requests per poll interval (steady max) {got} <= {limit}: {verdict(got <= limit)}")
    ours = all_results.get(1000, {}).get("ours")
    if ours:
        stall, blocked = ours["stall_max_ms"], ours["stalls_over_100ms"]
        print(
            f"  N=1000: longest stall over {ours['window_s']:.0f} s {stall:.1f} ms < {STALL_TARGET_MS:g} ms: "
            f"{verdict(stall < STALL_TARGET_MS)}; stalls >= 100 ms (Airflow warns) {blocked}: {verdict(not blocked)}"
        )
    ours, floor = all_results.get(TARGET_N, {}).get("ours"), all_results.get(TARGET_N, {}).get("floor")
    if ours and floor:
        stall, control = ours["stall_max_ms"], floor["stall_max_ms"]
        ok = stall <= 1.25 * control
        ratio = f"x{stall / control:.2f}" if control else "-"
        line = f"  N={TARGET_N}: longest stall {stall:.1f} ms vs control {control:.1f} ms ({ratio})"
        print(f"{line}, <= 1.25x: {verdict(ok)}")
    if ours:
        p99 = ours["stall_p99_ms"]
        print(f"  N={TARGET_N}: p99 stall {p99:.2f} ms < 5 ms: {verdict(p99 < 5)}")
    for n in sorted(all_results):
        for impl in ("ours", "floor"):
            res = all_results[n].get(impl)
            if res and res.get("objects_per_trigger") is not None:
                objects = res["objects_per_trigger"]
                print(f"  N={n}: GC-tracked objects per waiting trigger, {impl}: {objects:.0f} (report)")
