"""Writing a finished batch's output and error files.

Runs in a worker thread when a batch reaches ``completed``, ``expired`` or ``cancelled``. The
output file gets the successful lines of the requests that finished, in completion order (a
seeded permutation, so never input order); the error file gets the failed ones plus, for an
expired or cancelled batch, one ``batch_expired`` / ``batch_cancelled`` line per request that
never ran, shuffled with the same seed. Consumers must join on ``custom_id``, as with the
real service.
"""

from __future__ import annotations

import json
import random
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from airflow_provider_openai_batch.testing.execution import Execution
from airflow_provider_openai_batch.testing.ids import derived_id

STOP_MESSAGES = {
    "batch_expired": "This request could not be executed before the completion window expired.",
    "batch_cancelled": "This request was not executed because the batch was cancelled.",
}


@dataclass(frozen=True)
class ResultFiles:
    output: Path | None
    errors: Path | None
    usage: dict[str, Any]


def usage_block(execution: Execution, done: int) -> dict[str, Any]:
    """The batch's ``usage``: token counts summed over the requests that ran."""
    sums = [0, 0, 0, 0, 0]
    for index in execution.order[:done]:
        for slot, value in enumerate(execution.usages[index]):
            sums[slot] += value
    return {
        "input_tokens": sums[0],
        "input_tokens_details": {"cached_tokens": sums[1]},
        "output_tokens": sums[2],
        "output_tokens_details": {"reasoning_tokens": sums[3]},
        "total_tokens": sums[4],
    }


def stop_line(batch_id: str, custom_id: str, code: str) -> dict[str, Any]:
    """The error-file line of a request that never ran (``"response": null``)."""
    return {
        "id": derived_id("batch_req_", batch_id, custom_id),
        "custom_id": custom_id,
        "response": None,
        "error": {"code": code, "message": STOP_MESSAGES[code]},
    }


def write_results(
    execution: Execution,
    *,
    batch_id: str,
    done: int,
    stop_code: str | None,
    output_path: Path,
    error_path: Path,
    seed: int,
) -> ResultFiles:
    """Split the spool into output/error files; a file with no line is not created."""
    error_lines: list[bytes] = []
    wrote_output = False
    with execution.spool.open("rb") as spool, output_path.open("wb") as output:
        for index in execution.order[:done]:
            spool.seek(execution.offsets[index])
            line = spool.readline()
            if execution.failed[index]:
                error_lines.append(line)
            else:
                output.write(line)
                wrote_output = True
    if stop_code is not None:
        for index in execution.order[done:]:
            error_lines.append(json.dumps(stop_line(batch_id, execution.custom_ids[index], stop_code)).encode() + b"\n")
    random.Random(f"{seed}/{batch_id}/errors").shuffle(error_lines)
    if error_lines:
        with error_path.open("wb") as errors:
            errors.writelines(error_lines)
    if not wrote_output:
        output_path.unlink()
    return ResultFiles(
        output=output_path if wrote_output else None,
        errors=error_path if error_lines else None,
        usage=usage_block(execution, done),
    )
