"""Benchmark: landing a batch's results from a server in another process, against streaming and parsing them.

Generates, in a temporary directory deleted afterwards, a batch's result files: an output file of ``--lines`` lines of
about ``--line-kb`` KB each (chat completions, custom_ids shuffled), an error file of ``--error-pct`` percent more
requests (half ``batch_expired``, half HTTP 500), and the input file whose order the results may follow. It starts the
bundled fake OpenAI server in ANOTHER process (as the service is: the bytes come over HTTP on 127.0.0.1), uploads the
two result files to it, then measures, each run in its own fresh subprocess:

* baseline: stream both files over HTTP with a bare httpx client, split lines and ``json.loads`` every line, which is
  the least any reader of the results does (the same loop with ``orjson.loads`` is printed beside it when orjson is
  installed);
* ours, file order: ``land_results(batch, client.iter_file_lines, destination)``: stream, classify and write the
  landed JSONL atomically, in one pass;
* ours, input order: the same with ``input_source=<input file>``: results in input order, ``missing`` requests found.

The kinds alternate ``--repeat`` times so a burst of load on a shared machine hits all alike; the MEDIAN time of each
kind counts. Throughput is result-file MB (10^6 bytes, output + error file) per second for every kind. Memory is peak
RSS growth: the kernel's high-water mark (``ru_maxrss``) at the end minus the RSS (psutil) just before the work, in
that fresh subprocess (imports and the first connection are not counted); the largest growth over the repeats counts.
Targets: ours/baseline throughput >= 0.5 in file order (stretch 0.8), >= 0.4 in input order; growth ~35 MiB.
Output: human-readable lines, then one ``BENCH_JSON {...}`` line.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator

ENDPOINT = "/v1/chat/completions"
API_KEY = "sk-bench-results"
OUTPUT, ERRORS, INPUT, LANDED = "output.jsonl", "errors.jsonl", "input.jsonl", "results.jsonl"
TEXT = (
    "the committee reviewed quarterly figures and found that revenue grew while costs held steady "
    "a careful reading of the passage shows the author argues for gradual reform over sudden change "
    "photosynthesis converts light energy into chemical energy stored in glucose molecules"
)
MIB = 2**20
KINDS = {
    "baseline": "baseline: httpx stream + json.loads per line",
    "baseline_orjson": "context: httpx stream + orjson.loads per line",
    "ours": "land_results, file order (no input_file)",
    "ours_input": "land_results, input order (input_file)",
}


# The files ------------------------------------------------------------------------------------------------------------


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


# The server process ---------------------------------------------------------------------------------------------------


def serve(data_dir: str) -> None:
    """Serve the fake until stdin closes; the first line of stdout is the base URL."""
    from airflow_provider_openai_batch.testing import FakeOpenAIServer

    with FakeOpenAIServer(api_key=API_KEY, data_dir=data_dir, max_file_bytes=1 << 40) as server:
        print(server.url, flush=True)
        sys.stdin.read()


def start_server(data_dir: str) -> tuple[subprocess.Popen[str], str]:
    cmd = [sys.executable, os.path.abspath(__file__), "--serve", "--dir", data_dir]
    proc = subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, env=_env())
    url = proc.stdout.readline().strip()  # type: ignore[union-attr]
    if not url.startswith("http://127.0.0.1:"):
        proc.kill()
        raise RuntimeError(f"the fake server did not start (printed {url!r})")
    return proc, url


def stop_server(proc: subprocess.Popen[str]) -> None:
    proc.stdin.close()  # type: ignore[union-attr]
    try:
        proc.wait(30)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def _client(url: str):
    from airflow_provider_openai_batch.api.client import ClientConfig, OpenAIBatchClient

    return OpenAIBatchClient(ClientConfig(api_key=API_KEY, base_url=url, timeout=600))


def upload(url: str, directory: str) -> dict[str, str]:
    """Store the two result files on the server; ``purpose="user_data"`` keeps them out of batch validation."""
    with _client(url) as client:
        return {
            name: client.upload_file(os.path.join(directory, name), purpose="user_data").id for name in (OUTPUT, ERRORS)
        }


# In the fresh subprocess ----------------------------------------------------------------------------------------------


def _http_lines(http, file_id: str) -> Iterator[bytes]:
    """Lines of a file's content, split from the raw chunks as any careful reader would."""
    with http.stream("GET", f"files/{file_id}/content") as response:
        response.raise_for_status()
        tail = b""
        for chunk in response.iter_bytes():
            chunk = tail + chunk if tail else chunk
            start = 0
            end = chunk.find(b"\n")
            while end >= 0:
                yield chunk[start:end]
                start = end + 1
                end = chunk.find(b"\n", start)
            tail = chunk[start:]
    if tail:
        yield tail


def worker(kind: str, url: str, directory: str, ids: dict[str, str]) -> None:
    """Run one measurement in this fresh process and print a JSON line of seconds, RSS growth and extras."""
    import httpx
    import psutil

    from airflow_provider_openai_batch.api.models import Batch
    from airflow_provider_openai_batch.results.landing import land_results

    extra: dict[str, int] = {}
    headers = {"Authorization": f"Bearer {API_KEY}"}
    http = httpx.Client(base_url=url.rstrip("/") + "/", headers=headers, timeout=600)
    client = _client(url)
    http.get(f"files/{ids[ERRORS]}").raise_for_status()  # first connection, not measured
    client.get_file(ids[ERRORS])
    if kind == "baseline_orjson":
        import orjson

        loads = orjson.loads
    else:
        loads = json.loads
    batch = Batch(id="batch_bench", status="expired", output_file_id=ids[OUTPUT], error_file_id=ids[ERRORS])
    destination = os.path.join(directory, f"{kind}-{LANDED}")
    input_source = os.path.join(directory, INPUT) if kind == "ours_input" else None

    before = psutil.Process().memory_info().rss
    start = time.perf_counter()
    if kind.startswith("baseline"):
        for file_id in (ids[OUTPUT], ids[ERRORS]):
            for line in _http_lines(http, file_id):
                loads(line)
    else:
        manifest = land_results(
            batch, client.iter_file_lines, destination, input_source=input_source, spool_dir=directory
        )
        extra["records"] = manifest.counts.total
    seconds = time.perf_counter() - start
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # KiB on Linux
    if not kind.startswith("baseline"):
        extra["landed_bytes"] = os.path.getsize(destination)
        os.unlink(destination)
    print(json.dumps({"seconds": seconds, "rss_growth": max(0, peak - before), **extra}))


# In the parent --------------------------------------------------------------------------------------------------------


def _env() -> dict[str, str]:
    repo = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    return {**os.environ, "PYTHONPATH": repo + os.pathsep + os.environ.get("PYTHONPATH", "")}


def measure(kind: str, url: str, directory: str, ids: dict[str, str]) -> dict[str, float]:
    cmd = [sys.executable, os.path.abspath(__file__), "--worker", kind, "--url", url, "--dir", directory]
    cmd += ["--ids", json.dumps(ids)]
    done = subprocess.run(cmd, capture_output=True, text=True, env=_env())
    if done.returncode != 0:
        raise RuntimeError(f"{kind} worker failed:\n{done.stderr[-3000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def orjson_available() -> bool:
    try:
        import orjson  # noqa: F401
    except ImportError:
        return False
    return True


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--lines", type=int, default=200_000, help="lines in the output file")
    parser.add_argument("--line-kb", type=float, default=5.0, help="approximate size of an output line in KiB")
    parser.add_argument("--error-pct", type=float, default=1.0, help="error-file requests, percent of --lines")
    parser.add_argument("--repeat", type=int, default=3, help="runs per kind (median time, largest growth)")
    parser.add_argument("--quick", action="store_true", help="20,000 lines, one run per kind (a smoke run)")
    parser.add_argument("--worker", choices=sorted(KINDS), help=argparse.SUPPRESS)
    parser.add_argument("--serve", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--url", help=argparse.SUPPRESS)
    parser.add_argument("--dir", help=argparse.SUPPRESS)
    parser.add_argument("--ids", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve:
        serve(args.dir)
        return
    if args.worker:
        worker(args.worker, args.url, args.dir, json.loads(args.ids))
        return
    if args.quick:
        args.lines, args.repeat = min(args.lines, 20_000), 1

    kinds = ["baseline", "ours", "ours_input"] + (["baseline_orjson"] if orjson_available() else [])
    runs: dict[str, list[dict[str, float]]] = {kind: [] for kind in kinds}
    with tempfile.TemporaryDirectory(prefix="bench-results-") as tmp:
        info = generate(tmp, args.lines, args.line_kb, args.error_pct)
        result_mb = (info[OUTPUT] + info[ERRORS]) / 1e6
        print(
            f"files: output {info[OUTPUT] / 1e6:.1f} MB ({info['output_lines']:,} lines, shuffled), "
            f"errors {info[ERRORS] / 1e6:.1f} MB ({info['error_lines']:,} lines), "
            f"input {info[INPUT] / 1e6:.1f} MB ({info['requests']:,} requests)"
        )
        os.mkdir(os.path.join(tmp, "server"))
        proc, url = start_server(os.path.join(tmp, "server"))
        try:
            ids = upload(url, tmp)
            print(f"fake server in process {proc.pid} at {url}; {args.repeat} run(s) per kind, alternating")
            for _ in range(args.repeat):
                for kind in kinds:
                    runs[kind].append(measure(kind, url, tmp, ids))
        finally:
            stop_server(proc)
    for kind in ("ours", "ours_input"):
        assert all(r["records"] == info["requests"] for r in runs[kind]), f"{kind}: every request must land once"

    med = {kind: statistics.median(r["seconds"] for r in rs) for kind, rs in runs.items()}
    growth = {kind: max(r["rss_growth"] for r in rs) / MIB for kind, rs in runs.items()}
    mbps = {kind: result_mb / seconds for kind, seconds in med.items()}
    print(f"median of {args.repeat}; throughput in result-file MB/s; peak RSS growth in MiB (largest of the runs)")
    for kind in kinds:
        print(f"  {KINDS[kind]:48s} {med[kind]:7.2f} s  {mbps[kind]:6.0f} MB/s  {growth[kind]:6.1f} MiB")
    ratio = {kind: mbps[kind] / mbps["baseline"] for kind in ("ours", "ours_input")}
    print(f"ratio ours/baseline throughput, file order:  {ratio['ours']:.2f} (target >= 0.5, stretch 0.8)")
    print(f"ratio ours/baseline throughput, input order: {ratio['ours_input']:.2f} (target >= 0.4)")
    if "baseline_orjson" in mbps:
        print(
            f"(against the orjson loop: file order {mbps['ours'] / mbps['baseline_orjson']:.2f}, "
            f"input order {mbps['ours_input'] / mbps['baseline_orjson']:.2f})"
        )

    def figure(name: str, kind: str, target: str) -> dict[str, object]:
        return {
            "figure": name,
            "ours": round(mbps[kind], 1),
            "baseline": round(mbps["baseline"], 1),
            "unit": "MB/s",
            "ratio": round(ratio[kind], 3),
            "target": target,
        }

    figures = [
        figure("land over HTTP, file order (no input_file)", "ours", ">= 0.5 (stretch 0.8)"),
        figure("land over HTTP, input order (input_file)", "ours_input", ">= 0.4"),
    ]
    for kind, name in (("ours", "file order"), ("ours_input", "input order")):
        figures.append(
            {
                "figure": f"peak RSS growth, {name}",
                "ours": round(growth[kind], 1),
                "baseline": round(growth["baseline"], 1),
                "unit": "MiB",
                "ratio": round(growth[kind] / growth["baseline"], 3) if growth["baseline"] else None,
                "target": "~35 MiB at 200k lines (the custom_id index)",
            }
        )
    print("BENCH_JSON " + json.dumps({"name": "results", "figures": figures}))


if __name__ == "__main__":
    main()
