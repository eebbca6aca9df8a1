"""``[core] hostname_callable`` of the scale-out deployment: each component names itself.

All components run on one machine, so the real host name cannot tell two Celery workers or two
triggerers apart. Each gets ``OPENAI_BATCH_SCALEOUT_HOST`` (``worker-1``, ``triggerer-2``...) and
Airflow records that name where it records a host: a task try's ``hostname``, a job's ``hostname``.
"""

from __future__ import annotations

import os
import socket


def hostname() -> str:
    return os.environ.get("OPENAI_BATCH_SCALEOUT_HOST") or socket.getfqdn()
