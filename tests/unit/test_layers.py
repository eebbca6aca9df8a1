"""The house's floors: floor 1 (the API, input files, waiting, submitting, results, the fake server)
works without Airflow and never reaches up to the hook, operators, sensors, triggers or plugins.

Every module of the floor-1 subpackages is found by walking them, so a new module is guarded
the day it is added.
"""

from __future__ import annotations

import pkgutil
import subprocess
import sys
from pathlib import Path

import airflow_provider_openai_batch as package

FLOOR_ONE_PACKAGES = ["api", "inputs", "waiting", "submitting", "results", "testing"]
FLOOR_ONE_MODULES = ["defaults"]
UPPER_FLOORS = ["hooks", "operators", "sensors", "triggers", "links", "plugins", "compat", "get_provider_info"]


def floor_one_modules() -> list[str]:
    root = Path(package.__file__).parent
    names = [f"{package.__name__}.{name}" for name in FLOOR_ONE_MODULES]
    for sub in FLOOR_ONE_PACKAGES:
        names.append(f"{package.__name__}.{sub}")
        for info in pkgutil.walk_packages([str(root / sub)], prefix=f"{package.__name__}.{sub}."):
            if not info.name.endswith("__main__"):
                names.append(info.name)
    return names


def test_floor_one_is_found():
    names = floor_one_modules()
    assert f"{package.__name__}.api.client" in names
    assert f"{package.__name__}.inputs.batchfile" in names
    assert len(names) > 20


def test_floor_one_modules_import_neither_airflow_nor_upper_floors():
    imports = "; ".join(f"import {name}" for name in floor_one_modules())
    upper = [f"{package.__name__}.{name}" for name in UPPER_FLOORS]
    check = (
        "import sys; "
        "print(sorted(m for m in sys.modules if m == 'airflow' or m.startswith('airflow.') "
        f"or any(m == u or m.startswith(u + '.') for u in {upper!r})))"
    )
    result = subprocess.run([sys.executable, "-c", f"{imports}; {check}"], capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "[]"
