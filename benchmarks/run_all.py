"""Run every benchmark script and print one table of their figures, then the machine they ran on.

Which scripts: every ``benchmarks/*.py`` except this one and private helpers (names starting with
``_``). Each runs as its own subprocess with this interpreter (``make bench`` uses the project's
``.venv``), one after another, from the repository root.

Conventions a benchmark script follows:

* it prints human-readable lines, then ONE final line ``BENCH_JSON {"name": ..., "figures": [{"figure",
  "ours", "baseline", "unit", "ratio", "target"}, ...]}``;
* it exits 0 on success;
* it may support ``--quick`` (a smaller, faster run). With ``BENCH_QUICK=1`` in the environment,
  run_all passes ``--quick`` to every script whose ``--help`` output mentions ``--quick``.

A script that exits non-zero, times out (``--timeout`` per script) or prints no ``BENCH_JSON`` line
is reported as failed with the last lines of its stderr, and run_all then exits 1.
Usage: ``python benchmarks/run_all.py [--only NAME ...] [--timeout S]``; each script's own output
is streamed as it runs.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime
import json
import os
import platform
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
MARKER = "BENCH_JSON "
COLUMNS = ("script", "figure", "ours", "baseline", "unit", "ratio", "target")


def discover(only: list[str] | None) -> list[Path]:
    scripts = sorted(p for p in HERE.glob("*.py") if p.name != Path(__file__).name and not p.name.startswith("_"))
    if only:
        wanted = {name.removesuffix(".py") for name in only}
        scripts = [p for p in scripts if p.stem in wanted]
    return scripts


def supports_quick(script: Path) -> bool:
    try:
        done = subprocess.run(
            [sys.executable, str(script), "--help"], capture_output=True, text=True, timeout=120, cwd=ROOT
        )
    except subprocess.TimeoutExpired:
        return False
    return done.returncode == 0 and "--quick" in done.stdout


def run_script(script: Path, quick: bool, timeout: float) -> dict:
    """Run one script, echoing its output; return its parsed BENCH_JSON or a failure record."""
    cmd = [sys.executable, str(script)] + (["--quick"] if quick else [])
    print(f"\n=== {script.name}: {' '.join(cmd[1:])}", flush=True)
    started = time.monotonic()
    # Its own process group, so that a timeout also ends what the script started (e.g. a fake server).
    proc = subprocess.Popen(
        cmd, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, bufsize=1, start_new_session=True
    )
    stderr_lines: list[str] = []

    def drain_stderr() -> None:
        for line in proc.stderr:  # type: ignore[union-attr]
            stderr_lines.append(line.rstrip("\n"))
            del stderr_lines[:-200]
            sys.stderr.write(line)
            sys.stderr.flush()

    reader = threading.Thread(target=drain_stderr, daemon=True)
    reader.start()
    expired = threading.Event()

    def kill() -> None:
        expired.set()
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)

    timer = threading.Timer(timeout, kill)
    timer.start()
    bench: dict | None = None
    bad_json = None
    try:
        for line in proc.stdout:  # type: ignore[union-attr]
            sys.stdout.write(line)
            sys.stdout.flush()
            if line.startswith(MARKER):
                try:
                    bench = json.loads(line[len(MARKER) :])
                except ValueError as error:
                    bad_json = f"unparsable BENCH_JSON line: {error}"
        code = proc.wait()
    finally:
        timer.cancel()
        reader.join(10)
    seconds = time.monotonic() - started
    problem = None
    if expired.is_set():
        problem = f"timed out after {timeout:g} s"
    elif code != 0:
        problem = f"exit code {code}"
    elif bad_json:
        problem = bad_json
    elif bench is None:
        problem = "no BENCH_JSON line"
    elif not isinstance(bench.get("figures"), list):
        problem = "BENCH_JSON has no figures list"
    return {
        "script": script.name,
        "seconds": seconds,
        "problem": problem,
        "bench": bench,
        "stderr_tail": stderr_lines[-10:],
    }


def cell(value: object) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        if value != 0 and abs(value) < 0.01:
            return f"{value:.2g}"
        return f"{value:,.3f}".rstrip("0").rstrip(".") if abs(value) < 100 else f"{value:,.1f}"
    return str(value)


def print_table(rows: list[tuple[str, ...]]) -> None:
    widths = [max(len(COLUMNS[i]), *(len(r[i]) for r in rows)) if rows else len(COLUMNS[i]) for i in range(7)]
    widths[-1] = min(widths[-1], 60)
    line = "  ".join(f"{COLUMNS[i]:<{widths[i]}}" for i in range(7))
    print(line)
    print("  ".join("-" * w for w in widths))
    for row in rows:
        print(
            "  ".join((f"{row[i]:<{widths[i]}}" if i in (0, 1, 4, 6) else f"{row[i]:>{widths[i]}}") for i in range(7))
        )


def machine() -> list[str]:
    cpu = "?"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        cpu = platform.processor() or "?"
    ram = "?"
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                ram = f"{int(line.split()[1]) / 2**20:.1f} GiB"
                break
    except OSError:
        pass
    try:
        load = " ".join(f"{x:.2f}" for x in os.getloadavg())
    except OSError:
        load = "?"
    return [
        f"CPU: {cpu}",
        f"cores: {os.cpu_count()}",
        f"RAM: {ram}",
        f"Python: {platform.python_version()} ({sys.executable})",
        f"OS: {platform.platform()}",
        f"date: {datetime.datetime.now(datetime.timezone.utc).strftime('%Y-%m-%d %H:%M:%S UTC')}",
        f"load average at the end: {load}",
    ]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", nargs="*", help="run only these scripts (names, with or without .py)")
    parser.add_argument("--timeout", type=float, default=3600.0, help="seconds allowed per script (default 3600)")
    args = parser.parse_args()
    quick = os.environ.get("BENCH_QUICK") == "1"
    scripts = discover(args.only)
    if not scripts:
        print("no benchmark scripts found", file=sys.stderr)
        return 1
    print(f"benchmarks: {', '.join(p.name for p in scripts)}{' (BENCH_QUICK=1)' if quick else ''}")
    runs = [run_script(p, quick and supports_quick(p), args.timeout) for p in scripts]

    rows: list[tuple[str, ...]] = []
    for run in runs:
        if run["problem"]:
            continue
        for fig in run["bench"]["figures"]:
            rows.append(
                (
                    run["script"].removesuffix(".py"),
                    str(fig.get("figure", "?")),
                    cell(fig.get("ours")),
                    cell(fig.get("baseline")),
                    str(fig.get("unit") or ""),
                    cell(fig.get("ratio")),
                    str(fig.get("target") or ""),
                )
            )
    print("\n=== all figures (ratio as each script defines it; see the script's docstring)")
    print_table(rows)
    print()
    for run in runs:
        status = "FAILED: " + run["problem"] if run["problem"] else "ok"
        print(f"{run['script']:24s} {run['seconds']:7.1f} s  {status}")
    failed = [run for run in runs if run["problem"]]
    for run in failed:
        print(f"\n--- {run['script']} failed ({run['problem']}); last stderr lines:")
        for line in run["stderr_tail"] or ["(no stderr)"]:
            print(f"    {line}")
    print("\nmachine:")
    for line in machine():
        print(f"  {line}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
