"""Benchmark: memory and time of uploading a large batch input file, ours against plain httpx and the openai SDK.

Generates a chat-completions JSONL of about ``--mb`` MB (10^6 bytes) in a temporary directory (deleted
afterwards), starts the bundled fake server in this process, and uploads the file once per measurement,
each in a FRESH subprocess:

* ours: ``OpenAIBatchClient(config).upload_file(path)``;
* baseline: raw httpx streaming multipart, ``httpx.post(url, files={"file": open(path, "rb")},
  data={"purpose": "batch"})``;
* openai SDK (when importable): ``OpenAI(...).files.create(file=open(path, "rb"), purpose="batch")``,
  which is exactly what the official Airflow OpenAI provider's ``OpenAIHook.upload_file`` calls.

Memory is peak RSS growth of the uploading process, read from the kernel: just before the upload the
process resets its high-water mark (``echo 5 > /proc/self/clear_refs``) and reads ``VmRSS``; after the
upload it reads ``VmHWM`` (the high-water mark since the reset). Growth = VmHWM - VmRSS-before. No
thread samples, so short spikes are caught. Where ``clear_refs`` is unavailable it falls back to
``ru_maxrss`` (getrusage) after minus psutil RSS before. Imports and client construction happen before
the measurement, and every process first uploads a tiny file, so lazy imports and the first connection
are not counted. The fake server runs in this parent process, so its memory is not in the figures.

Target: ours <= 16 MB growth (the upload streams; it never holds the file).
Options: ``--mb N`` (default 200), ``--repeat N`` (default 1), ``--quick`` (20 MB).
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

from _inputs import write_chat_input

API_KEY = "sk-bench-upload"
TARGET_MB = 16.0
KINDS = {
    "ours": "OpenAIBatchClient.upload_file",
    "httpx": "raw httpx streaming multipart",
    "openai": "openai SDK files.create (official provider)",
}


# In the fresh subprocess ------------------------------------------------------------------------


def _status_kib(field: str) -> int | None:
    try:
        with open("/proc/self/status") as status:
            for line in status:
                if line.startswith(field + ":"):
                    return int(line.split()[1])
    except OSError:
        return None
    return None


class PeakRss:
    """Peak RSS growth of this process over a block, from the kernel's high-water mark."""

    def __enter__(self) -> PeakRss:
        self.method = "VmHWM after clear_refs"
        try:
            with open("/proc/self/clear_refs", "w") as refs:
                refs.write("5")  # reset VmHWM to the current RSS
        except OSError:
            self.method = "ru_maxrss - psutil rss"
        if self.method.startswith("VmHWM"):
            self.before = (_status_kib("VmRSS") or 0) * 1024
        else:
            import psutil

            self.before = psutil.Process().memory_info().rss
        return self

    def __exit__(self, *exc_info: object) -> None:
        if self.method.startswith("VmHWM"):
            peak = (_status_kib("VmHWM") or 0) * 1024
        else:
            peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # KiB on Linux
        self.growth = max(0, peak - self.before)


def _uploader(kind: str, url: str):
    """Build the client first (not measured); return ``upload(path) -> bytes stored``."""
    if kind == "ours":
        from airflow_provider_openai_batch.api.client import ClientConfig, OpenAIBatchClient

        client = OpenAIBatchClient(ClientConfig(api_key=API_KEY, base_url=url, timeout=600))
        return lambda path: client.upload_file(path).bytes
    if kind == "httpx":
        import httpx

        def upload(path: str) -> int:
            with open(path, "rb") as handle:
                response = httpx.post(
                    url + "/files",
                    files={"file": handle},
                    data={"purpose": "batch"},
                    headers={"Authorization": f"Bearer {API_KEY}"},
                    timeout=600,
                )
            response.raise_for_status()
            return response.json()["bytes"]

        return upload
    import openai

    sdk = openai.OpenAI(api_key=API_KEY, base_url=url, timeout=600, max_retries=0)

    def upload_sdk(path: str) -> int:
        with open(path, "rb") as handle:
            return sdk.files.create(file=handle, purpose="batch").bytes

    return upload_sdk


def worker(kind: str, url: str, path: str, warmup: str) -> None:
    """Upload once in this fresh process; print ``{"seconds", "rss_growth", "bytes", "method"}``."""
    upload = _uploader(kind, url)
    upload(warmup)  # lazy imports, first connection
    with PeakRss() as peak:
        start = time.perf_counter()
        stored = upload(path)
        seconds = time.perf_counter() - start
    print(json.dumps({"seconds": seconds, "rss_growth": peak.growth, "bytes": stored, "method": peak.method}))


# In the parent ------------------------------------------------------------------------------------


def sdk_available() -> bool:
    try:
        import openai  # noqa: F401
    except ImportError:
        return False
    return True


def measure(kind: str, url: str, path: str, warmup: str) -> dict[str, float]:
    repo = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    env = {**os.environ, "PYTHONPATH": repo + os.pathsep + os.environ.get("PYTHONPATH", "")}
    cmd = [sys.executable, os.path.abspath(__file__), "--worker", kind, "--url", url, "--path", path]
    cmd += ["--warmup", warmup]
    done = subprocess.run(cmd, capture_output=True, text=True, env=env)
    if done.returncode != 0:
        raise RuntimeError(f"{kind} worker failed:\n{done.stderr[-3000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def figure(name: str, ours: float, base: float, unit: str, target: str) -> dict[str, object]:
    return {
        "figure": name,
        "ours": round(ours, 3),
        "baseline": round(base, 3),
        "unit": unit,
        "ratio": round(ours / base, 3) if base else None,
        "target": target,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mb", type=int, default=200, help="approximate file size in MB (10^6 bytes)")
    parser.add_argument("--repeat", type=int, default=1, help="uploads per kind (median time, largest growth)")
    parser.add_argument("--quick", action="store_true", help="a 20 MB file instead (a smoke run)")
    parser.add_argument("--worker", choices=sorted(KINDS), help=argparse.SUPPRESS)
    parser.add_argument("--url", help=argparse.SUPPRESS)
    parser.add_argument("--path", help=argparse.SUPPRESS)
    parser.add_argument("--warmup", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        worker(args.worker, args.url, args.path, args.warmup)
        return

    if args.quick:
        args.mb = min(args.mb, 20)
    from airflow_provider_openai_batch.testing import FakeOpenAIServer

    kinds = ["ours", "httpx"] + (["openai"] if sdk_available() else [])
    with tempfile.TemporaryDirectory(prefix="bench-upload-") as tmp:
        path = os.path.join(tmp, "input.jsonl")
        warmup = os.path.join(tmp, "warmup.jsonl")
        size = write_chat_input(path, args.mb, max(100, min(50_000, args.mb * 250)), min_line=200)
        write_chat_input(warmup, 1, 100, min_line=200)
        print(f"file: {size:,} bytes ({size / 1e6:.1f} MB); each upload in a fresh subprocess")
        limit = max(209_715_200, size + 1_000_000)
        runs: dict[str, list[dict[str, float]]] = {kind: [] for kind in kinds}
        with FakeOpenAIServer(api_key=API_KEY, data_dir=tmp, max_file_bytes=limit) as server:
            for _ in range(args.repeat):
                for kind in kinds:  # alternate, so load on a shared machine hits every kind alike
                    run = measure(kind, server.url, path, warmup)
                    if run["bytes"] != size:
                        raise RuntimeError(f"{kind}: server stored {run['bytes']} bytes, file has {size}")
                    runs[kind].append(run)
    method = runs["ours"][0]["method"]
    result = {
        kind: {
            "seconds": statistics.median(r["seconds"] for r in rs),
            "mb": max(r["rss_growth"] for r in rs) / 1e6,
        }
        for kind, rs in runs.items()
    }
    print(f"memory: peak RSS growth of the uploading process ({method}); MB = 10^6 bytes")
    for kind in kinds:
        r = result[kind]
        print(
            f"  {KINDS[kind]:45s} {r['mb']:8.1f} MB growth  {r['seconds']:7.2f} s  "
            f"{size / 1e6 / r['seconds']:6.0f} MB/s"
        )
    print(
        "  (all three stream the file; growths under ~1 MB are allocator noise, so memory ratios between them"
        " carry no meaning; reading the file whole would grow by about the file size)"
    )
    ours, base = result["ours"], result["httpx"]
    print(f"ratio ours/httpx: memory {ours['mb'] / base['mb']:.2f}x, time {ours['seconds'] / base['seconds']:.2f}x")
    verdict = "met" if ours["mb"] <= TARGET_MB else "MISSED"
    print(f"target ours <= {TARGET_MB:.0f} MB growth: {verdict} ({ours['mb']:.1f} MB)")
    target = f"ours <= {TARGET_MB:.0f} MB growth"
    figures = [
        figure("upload peak RSS growth vs raw httpx", ours["mb"], base["mb"], "MB", target),
        figure("upload wall time vs raw httpx", ours["seconds"], base["seconds"], "s", "informational"),
    ]
    if "openai" in result:
        sdk = result["openai"]
        print(
            f"ratio ours/openai SDK: memory {ours['mb'] / sdk['mb']:.3f}x, time {ours['seconds'] / sdk['seconds']:.2f}x"
            " (the SDK call is what the official Airflow OpenAI provider's upload_file makes)"
        )
        figures += [
            figure("upload peak RSS growth vs openai SDK files.create", ours["mb"], sdk["mb"], "MB", target),
            figure(
                "upload wall time vs openai SDK files.create", ours["seconds"], sdk["seconds"], "s", "informational"
            ),
        ]
    else:
        print("openai SDK not importable: its figures are left out")
    print("BENCH_JSON " + json.dumps({"name": "upload", "figures": figures}))


if __name__ == "__main__":
    main()
