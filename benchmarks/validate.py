"""Benchmark: validate_batch_file against bare ``orjson.loads`` and ``json.loads`` per-line loops on the same file.

Generates a chat-completions JSONL of about ``--mb`` MB in ``--lines`` lines in a temporary
directory (deleted afterwards), then measures in this one run:

* baseline: ``for line in file: orjson.loads(line)``, the least any line-by-line JSON check can do
  with the fastest parser at hand (skipped, and json used instead, when orjson is not installed);
* context: the same loop with the standard library's ``json.loads``;
* ours: ``validate_batch_file(path, "/v1/chat/completions")`` (which also hashes every byte).

Every measurement is one run in a fresh subprocess; the kinds alternate, ``--repeat`` times
each, and the MEDIAN time counts, so a burst of load on a shared machine hits all alike.
Memory is peak RSS growth: the kernel's high-water mark (``ru_maxrss``) after the run minus the
RSS (psutil) just before it, so imports are not counted and no thread samples; the largest
growth over the repeats is reported.

Targets: time <= 1.3x the orjson loop; memory growth ~24 MiB (under 64 MiB).
Output: human-readable lines, then one ``BENCH_JSON {...}`` line.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time

from _inputs import ENDPOINT, write_chat_input


def _baseline_json(path: str) -> None:
    with open(path, "rb") as handle:
        for line in handle:
            json.loads(line)


def _baseline_orjson(path: str) -> None:
    import orjson

    loads = orjson.loads
    with open(path, "rb") as handle:
        for line in handle:
            loads(line)


def _ours(path: str) -> None:
    from airflow_provider_openai_batch.inputs.batchfile import validate_batch_file

    validate_batch_file(path, ENDPOINT)


def worker(kind: str, path: str) -> None:
    """Run once in this fresh process and print ``{"seconds": s, "rss_growth": bytes}``."""
    import psutil

    run = {"ours": _ours, "json": _baseline_json, "orjson": _baseline_orjson}[kind]
    if kind == "ours":
        import airflow_provider_openai_batch.inputs.batchfile  # noqa: F401  (import cost is not measured)
    elif kind == "orjson":
        import orjson  # noqa: F401
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


def median_of(kinds: tuple[str, ...], path: str, repeat: int) -> dict[str, dict[str, float]]:
    """Alternate the kinds ``repeat`` times; keep each one's median time and largest memory growth."""
    runs: dict[str, list[dict[str, float]]] = {kind: [] for kind in kinds}
    for _ in range(repeat):
        for kind in kinds:
            runs[kind].append(measure(kind, path))
    return {
        kind: {"seconds": statistics.median(r["seconds"] for r in rs), "rss_growth": max(r["rss_growth"] for r in rs)}
        for kind, rs in runs.items()
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mb", type=int, default=209, help="approximate file size in MB (10^6 bytes)")
    parser.add_argument("--lines", type=int, default=50_000)
    parser.add_argument("--repeat", type=int, default=5, help="runs per kind (median time)")
    parser.add_argument("--quick", action="store_true", help="a 20 MB file, 3 runs per kind (a smoke run)")
    parser.add_argument("--worker", choices=["ours", "json", "orjson"], help=argparse.SUPPRESS)
    parser.add_argument("--path", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        worker(args.worker, args.path)
        return
    if args.quick:
        args.mb, args.lines, args.repeat = 20, 5_000, 3
    kinds = ("orjson", "json", "ours") if orjson_available() else ("json", "ours")
    base_kind = kinds[0]
    with tempfile.TemporaryDirectory(prefix="bench-validate-") as tmp:
        path = os.path.join(tmp, "input.jsonl")
        size = write_chat_input(path, args.mb, args.lines)
        mb = size / 1e6
        print(f"file: {size:,} bytes ({mb:.1f} MB), {args.lines:,} lines, endpoint {ENDPOINT}")
        results = median_of(kinds, path, args.repeat)
    base, ours = results[base_kind], results["ours"]
    ratio = ours["seconds"] / base["seconds"]
    mem_mb = ours["rss_growth"] / 2**20
    labels = {"orjson": "baseline orjson.loads per line", "json": "json.loads per line", "ours": "validate_batch_file"}
    for kind in kinds:
        run = results[kind]
        print(f"{labels[kind]:30s} {run['seconds']:.3f} s, {mb / run['seconds']:.0f} MB/s (median of {args.repeat})")
    print(f"ratio ours/{base_kind} loop: {ratio:.2f} (target <= 1.3)")
    if "json" in results and base_kind != "json":
        print(f"ratio ours/json loop: {ours['seconds'] / results['json']['seconds']:.2f}")
    print(f"peak RSS growth: ours {mem_mb:.1f} MiB, baseline {base['rss_growth'] / 2**20:.1f} MiB (target < 64 MiB)")
    figures = [
        {
            "figure": f"validate time vs a bare {base_kind}.loads loop",
            "ours": round(ours["seconds"], 4),
            "baseline": round(base["seconds"], 4),
            "unit": "s",
            "ratio": round(ratio, 3),
            "target": "ratio <= 1.3",
        },
    ]
    if "json" in results and base_kind != "json":
        figures.append(
            {
                "figure": "validate time vs a bare json.loads loop",
                "ours": round(ours["seconds"], 4),
                "baseline": round(results["json"]["seconds"], 4),
                "unit": "s",
                "ratio": round(ours["seconds"] / results["json"]["seconds"], 3),
                "target": "context",
            }
        )
    figures += [
        {
            "figure": "validate throughput",
            "ours": round(mb / ours["seconds"], 1),
            "baseline": round(mb / base["seconds"], 1),
            "unit": "MB/s",
            "ratio": round(base["seconds"] / ours["seconds"], 3),
            "target": ">= 0.77x baseline",
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


def orjson_available() -> bool:
    try:
        import orjson  # noqa: F401
    except ImportError:
        return False
    return True


if __name__ == "__main__":
    main()
