"""Benchmark: landing merged batch results in input order against a bare ``json.loads``-per-line loop.

Generates, in a temporary directory deleted afterwards, a batch's result files: an output file of ``--lines`` lines
of about ``--line-kb`` KB each (chat completions, custom_ids shuffled), an error file of ``--error-pct`` percent more
requests (half ``batch_expired``, half HTTP 500), and the input file whose order the results must follow. Then, each
in its own fresh subprocess:

* baseline: ``for line in output_file: json.loads(line)``, the least any line-by-line reader can do;
* ours: ``land_results(batch, fetch_lines, destination, input_source=input_file)``: stream both files, classify,
  join by custom_id, spool, and write the input-ordered JSONL atomically;
* index: the same merge without landing, to report the size of the custom_id index (what grows with requests).

Throughput is result-file MB (10^6 bytes) per second: output + error files for ours, the output file for the
baseline (which reads less). Memory is peak RSS growth: the kernel's high-water mark (``resource.getrusage``
``ru_maxrss``) at the end minus the RSS (psutil) just before the work, in that fresh subprocess, so imports are not
counted and nothing samples in a thread. Target: growth under 64 MiB beyond the custom_id index.
Output: human-readable lines, then one ``BENCH_JSON {...}`` line.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import resource
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator

ENDPOINT = "/v1/chat/completions"
OUTPUT, ERRORS, INPUT, LANDED = "output.jsonl", "errors.jsonl", "input.jsonl", "results.jsonl"
TEXT = (
    "the committee reviewed quarterly figures and found that revenue grew while costs held steady "
    "a careful reading of the passage shows the author argues for gradual reform over sudden change "
    "photosynthesis converts light energy into chemical energy stored in glucose molecules"
)
MIB = 2**20


def _ok_line(custom_id: str, content: bytes, tokens: int) -> bytes:
    cid = custom_id.encode()
    return (
        b'{"id":"batch_req_' + cid + b'","custom_id":"' + cid + b'","response":{"status_code":200,'
        b'"request_id":"req_' + cid + b'","body":{"id":"chatcmpl-' + cid + b'","object":"chat.completion",'
        b'"created":1700000000,"model":"gpt-4o-mini-2024-07-18","choices":[{"index":0,"message":'
        b'{"role":"assistant","content":' + content + b',"refusal":null},"logprobs":null,"finish_reason":"stop"}],'
        b'"usage":{"prompt_tokens":'
        + str(tokens).encode()
        + b',"completion_tokens":1200,"total_tokens":'
        + str(tokens + 1200).encode()
        + b',"prompt_tokens_details":{"cached_tokens":0},"completion_tokens_details":{"reasoning_tokens":0}},'
        b'"system_fingerprint":"fp_0123456789"}},"error":null}\n'
    )


def _error_line(custom_id: str, expired: bool) -> bytes:
    if expired:
        error = {"code": "batch_expired", "message": "This request could not be executed before the window expired."}
        line = {"id": f"batch_req_{custom_id}", "custom_id": custom_id, "response": None, "error": error}
    else:
        body = {"error": {"message": "The server had an error.", "type": "server_error", "param": None, "code": None}}
        response = {"status_code": 500, "request_id": f"req_{custom_id}", "body": body}
        line = {"id": f"batch_req_{custom_id}", "custom_id": custom_id, "response": response, "error": None}
    return (json.dumps(line, separators=(",", ":")) + "\n").encode()


def generate(directory: str, lines: int, line_kb: float, error_pct: float) -> dict[str, int]:
    """Write the output, error and input files; return their sizes and the request count."""
    rng = random.Random(42)
    errors = round(lines * error_pct / 100)
    custom_ids = [f"request-{i:07d}" for i in range(lines + errors)]
    words = TEXT.split()
    corpus = " ".join(rng.choice(words) for _ in range(200_000))
    overhead = len(_ok_line(custom_ids[0], b'""', 100))
    text_len = max(1, int(line_kb * 1024) - overhead)
    contents = []
    for _ in range(64):
        start = rng.randrange(0, len(corpus) - text_len)
        contents.append(json.dumps(corpus[start : start + text_len]).encode())

    shuffled = custom_ids[:]
    rng.shuffle(shuffled)
    with open(os.path.join(directory, OUTPUT), "wb") as out, open(os.path.join(directory, ERRORS), "wb") as err:
        for n, custom_id in enumerate(shuffled):
            if n < errors:
                err.write(_error_line(custom_id, expired=n % 2 == 0))
            else:
                out.write(_ok_line(custom_id, rng.choice(contents), rng.randrange(50, 500)))
    with open(os.path.join(directory, INPUT), "wb") as handle:
        for i, custom_id in enumerate(custom_ids):
            body = {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": f"Summarise document {i}."}]}
            line = {"custom_id": custom_id, "method": "POST", "url": ENDPOINT, "body": body}
            handle.write((json.dumps(line, separators=(",", ":")) + "\n").encode())
    sizes = {name: os.path.getsize(os.path.join(directory, name)) for name in (OUTPUT, ERRORS, INPUT)}
    return {**sizes, "requests": len(custom_ids), "output_lines": lines, "error_lines": errors}


def _batch_and_fetch(directory: str):
    from airflow_provider_openai_batch.api.models import Batch

    batch = Batch(id="batch_bench", status="expired", output_file_id=OUTPUT, error_file_id=ERRORS, endpoint=ENDPOINT)

    def fetch_lines(file_id: str) -> Iterator[bytes]:
        with open(os.path.join(directory, file_id), "rb") as handle:
            yield from handle

    return batch, fetch_lines


def worker(kind: str, directory: str) -> None:
    """Run one measurement in this fresh process and print a JSON line of seconds, RSS growth and extras."""
    import psutil

    from airflow_provider_openai_batch.results.landing import land_results
    from airflow_provider_openai_batch.results.merge import ResultMerge

    batch, fetch_lines = _batch_and_fetch(directory)
    input_file = os.path.join(directory, INPUT)
    extra: dict[str, int] = {}
    before = psutil.Process().memory_info().rss
    start = time.perf_counter()
    if kind == "baseline":
        with open(os.path.join(directory, OUTPUT), "rb") as handle:
            for line in handle:
                json.loads(line)
    elif kind == "ours":
        manifest = land_results(
            batch, fetch_lines, os.path.join(directory, LANDED), input_source=input_file, spool_dir=directory
        )
        extra["records"] = manifest.counts.total
    else:
        merge = ResultMerge(batch, fetch_lines, input_source=input_file, spool_dir=directory)
        extra["records"] = sum(1 for _ in merge.lines())
        extra["index_nbytes"] = merge.index_nbytes
    seconds = time.perf_counter() - start
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # KiB on Linux
    print(json.dumps({"seconds": seconds, "rss_growth": max(0, peak - before), **extra}))


def measure(kind: str, directory: str) -> dict[str, float]:
    repo = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    env = {**os.environ, "PYTHONPATH": repo + os.pathsep + os.environ.get("PYTHONPATH", "")}
    cmd = [sys.executable, os.path.abspath(__file__), "--worker", kind, "--dir", directory]
    out = subprocess.run(cmd, check=True, capture_output=True, text=True, env=env).stdout
    return json.loads(out.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--lines", type=int, default=200_000, help="lines in the output file")
    parser.add_argument("--line-kb", type=float, default=5.0, help="approximate size of an output line in KiB")
    parser.add_argument("--error-pct", type=float, default=5.0, help="error-file requests, percent of --lines")
    parser.add_argument("--worker", choices=["baseline", "ours", "index"], help=argparse.SUPPRESS)
    parser.add_argument("--dir", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        worker(args.worker, args.dir)
        return

    with tempfile.TemporaryDirectory(prefix="bench-results-") as tmp:
        info = generate(tmp, args.lines, args.line_kb, args.error_pct)
        result_mb = (info[OUTPUT] + info[ERRORS]) / 1e6
        output_mb = info[OUTPUT] / 1e6
        print(
            f"files: output {output_mb:.1f} MB ({info['output_lines']:,} lines, shuffled), "
            f"errors {info[ERRORS] / 1e6:.1f} MB ({info['error_lines']:,} lines), "
            f"input {info[INPUT] / 1e6:.1f} MB ({info['requests']:,} requests)"
        )
        base = measure("baseline", tmp)
        ours = measure("ours", tmp)
        index = measure("index", tmp)
        landed_mb = os.path.getsize(os.path.join(tmp, LANDED)) / 1e6
    assert ours["records"] == index["records"] == info["requests"], "every request must land once"

    ours_mbps, base_mbps = result_mb / ours["seconds"], output_mb / base["seconds"]
    index_mib = index["index_nbytes"] / MIB
    ours_mib, base_mib = ours["rss_growth"] / MIB, base["rss_growth"] / MIB
    beyond_index = ours_mib - index_mib
    print(f"baseline json.loads per output line: {base['seconds']:.2f} s, {base_mbps:.0f} MB/s")
    print(
        f"land_results in input order:         {ours['seconds']:.2f} s, {ours_mbps:.0f} MB/s "
        f"({info['requests'] / ours['seconds']:,.0f} requests/s, landed {landed_mb:.1f} MB)"
    )
    print(f"ratio ours/baseline throughput: {ours_mbps / base_mbps:.2f}")
    print(f"merge without landing: {index['seconds']:.2f} s, {result_mb / index['seconds']:.0f} MB/s")
    print(f"custom_id index: {index_mib:.1f} MiB for {info['requests']:,} requests")
    print(
        f"peak RSS growth: ours {ours_mib:.1f} MiB ({beyond_index:.1f} MiB beyond the index), "
        f"baseline {base_mib:.1f} MiB (target: < 64 MiB beyond the index)"
    )
    figures = [
        {
            "figure": "stream + merge + land throughput (input order)",
            "ours": round(ours_mbps, 1),
            "baseline": round(base_mbps, 1),
            "unit": "MB/s",
            "ratio": round(ours_mbps / base_mbps, 3),
            "target": "context: the baseline only parses the output file",
        },
        {
            "figure": "peak RSS growth",
            "ours": round(ours_mib, 1),
            "baseline": round(base_mib, 1),
            "unit": "MiB",
            "ratio": round(ours_mib / base_mib, 3) if base_mib else None,
            "target": "ours - custom_id index < 64 MiB",
        },
        {
            "figure": "peak RSS growth beyond the custom_id index",
            "ours": round(beyond_index, 1),
            "baseline": round(base_mib, 1),
            "unit": "MiB",
            "ratio": round(beyond_index / base_mib, 3) if base_mib else None,
            "target": "< 64 MiB",
        },
        {
            "figure": "custom_id index size",
            "ours": round(index_mib, 1),
            "baseline": None,
            "unit": "MiB",
            "ratio": None,
            "target": f"context: {info['requests']:,} requests",
        },
    ]
    print("BENCH_JSON " + json.dumps({"name": "results", "figures": figures}))


if __name__ == "__main__":
    main()
