"""Benchmark: validate_batch_file against a bare ``json.loads``-per-line loop on the same file.

Generates a chat-completions JSONL of about ``--mb`` MB in ``--lines`` lines in a temporary
directory (deleted afterwards), then measures in this one run:

* baseline: ``for line in file: json.loads(line)``, the least any line-by-line JSON check can do;
* ours: ``validate_batch_file(path, "/v1/chat/completions")``.

Every measurement is one run in a fresh subprocess; baseline and ours alternate, ``--repeat``
times each, and the best time counts, so a burst of load on a shared machine hits both alike.
Memory is peak RSS growth: the kernel's high-water mark (``ru_maxrss``) after the run minus the
RSS (psutil) just before it, so imports are not counted and no thread samples; the largest
growth over the repeats is reported.

Targets: time within 2x of the baseline; memory growth under 64 MB.
Output: human-readable lines, then one ``BENCH_JSON {...}`` line.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time

from _inputs import ENDPOINT, write_chat_input


def _baseline(path: str) -> None:
    with open(path, "rb") as handle:
        for line in handle:
            json.loads(line)


def _ours(path: str) -> None:
    from airflow_provider_openai_batch.inputs.batchfile import validate_batch_file

    validate_batch_file(path, ENDPOINT)


def worker(kind: str, path: str) -> None:
    """Run once in this fresh process and print ``{"seconds": s, "rss_growth": bytes}``."""
    import psutil

    run = _ours if kind == "ours" else _baseline
    if kind == "ours":
        import airflow_provider_openai_batch.inputs.batchfile  # noqa: F401  (import cost is not measured)
    before = psutil.Process().memory_info().rss
    start = time.perf_counter()
    run(path)
    seconds = time.perf_counter() - start
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # KiB on Linux
    print(json.dumps({"seconds": seconds, "rss_growth": max(0, peak - before)}))


def measure(kind: str, path: str) -> dict[str, float]:
    repo = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    env = {**os.environ, "PYTHONPATH": repo + os.pathsep + os.environ.get("PYTHONPATH", "")}
    cmd = [sys.executable, os.path.abspath(__file__), "--worker", kind, "--path", path]
    out = subprocess.run(cmd, check=True, capture_output=True, text=True, env=env).stdout
    return json.loads(out.strip().splitlines()[-1])


def best_of(kinds: tuple[str, ...], path: str, repeat: int) -> dict[str, dict[str, float]]:
    """Alternate the kinds ``repeat`` times; keep each one's best time and largest memory growth."""
    runs: dict[str, list[dict[str, float]]] = {kind: [] for kind in kinds}
    for _ in range(repeat):
        for kind in kinds:
            runs[kind].append(measure(kind, path))
    return {
        kind: {"seconds": min(r["seconds"] for r in rs), "rss_growth": max(r["rss_growth"] for r in rs)}
        for kind, rs in runs.items()
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mb", type=int, default=200, help="approximate file size in MB (10^6 bytes)")
    parser.add_argument("--lines", type=int, default=50_000)
    parser.add_argument("--repeat", type=int, default=3, help="best-of-N timing")
    parser.add_argument("--worker", choices=["ours", "baseline"], help=argparse.SUPPRESS)
    parser.add_argument("--path", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        worker(args.worker, args.path)
        return
    with tempfile.TemporaryDirectory(prefix="bench-validate-") as tmp:
        path = os.path.join(tmp, "input.jsonl")
        size = write_chat_input(path, args.mb, args.lines)
        mb = size / 1e6
        print(f"file: {size:,} bytes ({mb:.1f} MB), {args.lines:,} lines, endpoint {ENDPOINT}")
        results = best_of(("baseline", "ours"), path, args.repeat)
    base, ours = results["baseline"], results["ours"]
    ratio = ours["seconds"] / base["seconds"]
    mem_mb = ours["rss_growth"] / 2**20
    for label, run in (("baseline json.loads per line", base), ("validate_batch_file", ours)):
        print(f"{label:30s} {run['seconds']:.3f} s, {mb / run['seconds']:.0f} MB/s (best of {args.repeat})")
    print(f"ratio ours/baseline: {ratio:.2f} (target <= 2.0)")
    print(f"peak RSS growth: ours {mem_mb:.1f} MiB, baseline {base['rss_growth'] / 2**20:.1f} MiB (target < 64 MiB)")
    figures = [
        {
            "figure": "validate time",
            "ours": round(ours["seconds"], 4),
            "baseline": round(base["seconds"], 4),
            "unit": "s",
            "ratio": round(ratio, 3),
            "target": "ratio <= 2.0",
        },
        {
            "figure": "validate throughput",
            "ours": round(mb / ours["seconds"], 1),
            "baseline": round(mb / base["seconds"], 1),
            "unit": "MB/s",
            "ratio": round(base["seconds"] / ours["seconds"], 3),
            "target": ">= 0.5x baseline",
        },
        {
            "figure": "peak RSS growth",
            "ours": round(mem_mb, 1),
            "baseline": round(base["rss_growth"] / 2**20, 1),
            "unit": "MiB",
            "ratio": round(ours["rss_growth"] / base["rss_growth"], 3) if base["rss_growth"] else None,
            "target": "ours < 64 MiB",
        },
    ]
    print("BENCH_JSON " + json.dumps({"name": "validate", "figures": figures}))


if __name__ == "__main__":
    main()
