"""Every default the provider's waiting and resubmitting use, in one place (floor 1: no Airflow import).

The operator, the sensor, the trigger and the floor-1 logic all read these, so a default
cannot differ between the deferred path, the worker loop and the poke.
"""

from __future__ import annotations

POLL_INTERVAL = 60.0
"""Seconds between status polls (operator ``poll_interval``, sensor ``poke_interval``, trigger)."""
MAX_OUTAGE = 1800.0
"""Seconds of consecutive transient API errors a wait tolerates before it ends with ``error``."""
SENSOR_TIMEOUT = 48 * 3600.0
"""The batch window is 24 h and cancelling can take more minutes: two days is a safe sensor default."""
DEFERRAL_MARGIN = 60.0
"""Seconds Airflow's own deferral timeout runs past our deadline, so the trigger's clean timeout event wins."""
FIRST_POLL_JITTER = 0.2
"""Up to this share of the first interval is cut at random, spreading the first polls of triggers started together."""

TOKEN_LIMIT_RETRY_DELAY = 300.0
"""First wait before resubmitting after ``token_limit_exceeded``; it doubles on each resubmission."""
TOKEN_LIMIT_MAX_DELAY = 3600.0
"""The longest single wait before a resubmission."""
TOKEN_LIMIT_MAX_WAIT = 6 * 3600.0
"""The most time spent waiting to resubmit, in total, before the task fails."""

REATTACH_CLOCK_SKEW = 600.0
"""Seconds subtracted from the earliest time a task instance could have created its batch, so a server clock
running behind ours still finds the batch when re-attaching."""
