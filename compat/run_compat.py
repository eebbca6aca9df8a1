"""make test-compat: the provider's tests on each Airflow 3 minor, one throwaway venv per minor.

Each minor's venv (``.compat/airflow-3.N``) is installed from the pins kept in the repo
(``compat/constraints-airflow-3.N.txt``; 3.3 uses the project's own ``constraints.txt``), then
the provider with its dev extras, then the unit tests and the ``compat``-marked dag.test() subset
run in it. A venv is reused while its pins and pyproject.toml are unchanged (a stamp file holds
their hash). Minors run one after the other (CI has 2 cores). ``COMPAT_MINORS=3.0,3.3`` picks some.

Pins were made with pip + ``pip freeze`` in a venv where that Airflow passes these tests; see the
README section "Supported Airflow versions" for what each pin fixes.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PIP_VERSION = "26.3"
PINS = {
    "3.0": ROOT / "compat" / "constraints-airflow-3.0.txt",
    "3.1": ROOT / "compat" / "constraints-airflow-3.1.txt",
    "3.2": ROOT / "compat" / "constraints-airflow-3.2.txt",
    "3.3": ROOT / "constraints.txt",
}
#: Minors whose dag.test() subset cannot run, with the reason printed in the summary.
E2E_NOT_RUN = {
    "3.2": "Airflow 3.2.2's in-process execution API that dag.test() uses fails before the task runs "
    "(AttributeError: 'State' object has no attribute 'svcs_registry'), with the pin sets tried",
}


def run(command: list[str], **kwargs) -> subprocess.CompletedProcess:
    print("+", " ".join(command), flush=True)
    return subprocess.run(command, cwd=ROOT, **kwargs)


def venv_for(minor: str) -> Path:
    """The venv of ``minor``, (re)built only when its pins or pyproject.toml changed."""
    pins = PINS[minor]
    venv = ROOT / ".compat" / f"airflow-{minor}"
    digest = hashlib.sha256(pins.read_bytes() + (ROOT / "pyproject.toml").read_bytes()).hexdigest()
    stamp = venv / ".stamp"
    if stamp.is_file() and stamp.read_text() == digest:
        return venv
    shutil.rmtree(venv, ignore_errors=True)
    python = [sys.executable, "-m"]
    pip = [str(venv / "bin" / "python"), "-m", "pip", "--disable-pip-version-check", "-q"]
    run([*python, "venv", str(venv)], check=True)
    run([*pip, "install", f"pip=={PIP_VERSION}"], check=True)
    # The build tools the project pins (an old seeded setuptools cannot read pyproject.toml's SPDX license).
    run([*pip, "install", "-c", str(ROOT / "constraints.txt"), "setuptools", "wheel"], check=True)
    run([*pip, "install", "-c", str(pins), "--no-build-isolation", "-e", ".[dev]"], check=True)
    stamp.write_text(digest)
    return venv


def test_minor(minor: str) -> tuple[int, str]:
    venv = venv_for(minor)
    marker = "not e2e" if minor in E2E_NOT_RUN else "not e2e or compat"
    env = {**os.environ, "PYTHONDONTWRITEBYTECODE": "1"}
    done = run(
        [str(venv / "bin" / "pytest"), "-q", "-p", "no:cacheprovider", "-m", marker, "tests/unit", "tests/e2e"],
        env=env,
    )
    return done.returncode, marker


def main() -> int:
    minors = [m.strip() for m in os.environ.get("COMPAT_MINORS", ",".join(PINS)).split(",") if m.strip()]
    unknown = [m for m in minors if m not in PINS]
    if unknown:
        print(f"Unknown Airflow minors {unknown}; known: {sorted(PINS)}", file=sys.stderr)
        return 2
    summary = []
    for minor in minors:
        started = time.monotonic()
        code, marker = test_minor(minor)
        summary.append((minor, code, marker, time.monotonic() - started))
    print("\nAirflow  result  time     tests")
    for minor, code, marker, seconds in summary:
        print(f"{minor:<8} {'pass' if code == 0 else 'FAIL':<7} {seconds:6.0f} s  -m '{marker}'")
        if minor in E2E_NOT_RUN:
            print(f"         dag.test() subset not run: {E2E_NOT_RUN[minor]}")
    return 0 if all(code == 0 for _, code, _, _ in summary) else 1


if __name__ == "__main__":
    sys.exit(main())
