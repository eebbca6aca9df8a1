"""For trigger_scale.py: the fleet the triggers wait on, and the baseline to compare with.

* the fake OpenAI server in its own process (so its CPU is not the trigger process's), with
  batches that stay ``in_progress`` for a day, and its control routes (faults, request counters);
* the batches, created beforehand through the public API from one uploaded input file;
* the official provider (the baseline), installed once with ``pip --no-deps --target`` into
  ``benchmarks/.data/official`` and put on ``PYTHONPATH`` only in the baseline's own process.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import urllib.request
from pathlib import Path

from _interval_requests import batch_reads  # type: ignore[import-not-found]

HERE = Path(__file__).resolve().parent
DATA = HERE / ".data"
OFFICIAL_DIR = DATA / "official"
OFFICIAL_REQ = "apache-airflow-providers-openai==2.2.0"
API_KEY = "sk-bench"
CONN_ID = "openai_default"
INPUT_LINE = (
    b'{"custom_id":"r-1","method":"POST","url":"/v1/chat/completions",'
    b'"body":{"model":"gpt-4o-mini","messages":[{"role":"user","content":"hi"}],"max_tokens":4}}\n'
)


def ensure_official() -> tuple[Path | None, str]:
    """Install the official provider into benchmarks/.data/official once; return (dir or None, note)."""
    for dist in ("openai", "apache-airflow-providers-common-compat"):
        try:
            from importlib.metadata import version

            version(dist)
        except Exception:
            return None, f"baseline skipped: {dist} is not installed in this venv"
    if not (OFFICIAL_DIR / "airflow" / "providers" / "openai" / "triggers" / "openai.py").exists():
        DATA.mkdir(parents=True, exist_ok=True)
        staging = Path(tempfile.mkdtemp(prefix="official-", dir=DATA))
        cmd = [
            sys.executable, "-m", "pip", "install", "--quiet", "--disable-pip-version-check",
            "--no-deps", "--target", str(staging), OFFICIAL_REQ,
        ]  # fmt: skip
        print(f"installing the baseline: {' '.join(cmd[2:])}", flush=True)
        try:
            done = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
        except subprocess.TimeoutExpired:
            shutil.rmtree(staging, ignore_errors=True)
            return None, f"baseline skipped: installing {OFFICIAL_REQ} timed out (no network?)"
        if done.returncode != 0:
            shutil.rmtree(staging, ignore_errors=True)
            tail = " | ".join((done.stderr or done.stdout).strip().splitlines()[-3:])
            return None, f"baseline skipped: could not install {OFFICIAL_REQ} (no network?): {tail}"
        shutil.rmtree(OFFICIAL_DIR, ignore_errors=True)
        staging.rename(OFFICIAL_DIR)
    check = subprocess.run(
        [sys.executable, "-c", "import airflow.providers.openai.triggers.openai as m; print(m.__file__)"],
        env={**os.environ, "PYTHONPATH": str(OFFICIAL_DIR), "AIRFLOW_HOME": tempfile.gettempdir()},
        capture_output=True,
        text=True,
        timeout=120,
    )
    if check.returncode != 0 or str(OFFICIAL_DIR) not in check.stdout:
        tail = " | ".join(check.stderr.strip().splitlines()[-3:])
        return None, f"baseline skipped: the installed official provider does not import: {tail}"
    return OFFICIAL_DIR, f"baseline: {OFFICIAL_REQ} from {OFFICIAL_DIR.relative_to(HERE.parent)}"


class FakeServerProcess:
    """The bundled fake server (``python -m airflow_provider_openai_batch.testing``) in its own process."""

    def __init__(self, log_path: Path) -> None:
        self.log_path = log_path
        self.proc: subprocess.Popen[str] | None = None
        self.url = ""

    def start(self) -> FakeServerProcess:
        cmd = [
            sys.executable, "-m", "airflow_provider_openai_batch.testing", "--port", "0",
            "--validating-seconds", "0", "--in-progress-seconds", "86000", "--api-key", API_KEY,
        ]  # fmt: skip
        self._log = open(self.log_path, "w")  # noqa: SIM115 - closed in stop()
        self.proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=self._log, text=True)
        line: list[str] = []
        reader = threading.Thread(target=lambda: line.append(self.proc.stdout.readline()), daemon=True)  # type: ignore[union-attr]
        reader.start()
        reader.join(60)
        if not line or not line[0].startswith("http"):
            self.stop()
            raise RuntimeError(f"the fake server did not start; see {self.log_path}")
        self.url = line[0].strip()
        self.root = self.url.rsplit("/v1", 1)[0]
        return self

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        if hasattr(self, "_log"):
            self._log.close()

    def control(self, method: str, route: str, body: dict | None = None) -> object:
        data = json.dumps(body).encode() if body is not None else None
        request = urllib.request.Request(f"{self.root}/_fake/{route}", data=data, method=method)
        request.add_header("Content-Type", "application/json")
        with urllib.request.urlopen(request, timeout=60) as response:
            return json.loads(response.read())

    def get_batch_requests(self) -> int:
        """Reads of batches: list pages and single GETs."""
        return batch_reads(self.root)

    def cpu_seconds(self) -> float:
        import psutil

        times = psutil.Process(self.proc.pid).cpu_times()  # type: ignore[union-attr]
        return times.user + times.system


def create_batches(url: str, count: int) -> list[str]:
    """``count`` batches from one uploaded input file, 16 creates at a time; their ids, oldest first."""
    import asyncio

    import httpx

    async def run() -> list[str]:
        limits = httpx.Limits(max_connections=16)
        headers = {"Authorization": f"Bearer {API_KEY}"}
        async with httpx.AsyncClient(base_url=url + "/", headers=headers, limits=limits, timeout=120) as client:
            files = {"file": ("bench.jsonl", INPUT_LINE, "application/jsonl")}
            uploaded = await client.post("files", data={"purpose": "batch"}, files=files)
            uploaded.raise_for_status()
            file_id = uploaded.json()["id"]
            body = {"input_file_id": file_id, "endpoint": "/v1/chat/completions", "completion_window": "24h"}
            gate = asyncio.Semaphore(16)

            async def one() -> str:
                async with gate:
                    response = await client.post("batches", json=body)
                    response.raise_for_status()
                    return str(response.json()["id"])

            return list(await asyncio.gather(*(one() for _ in range(count))))

    return asyncio.run(run())
