"""An auth manager for the UI tests: Airflow's simple one, plus per-DAG rules it lacks.

Non-admin users may not read any DAG whose id contains ``private`` (the simple auth manager
grants by role only, so per-DAG visibility needs this small rule to be tested).
"""

from __future__ import annotations

from airflow.api_fastapi.auth.managers.simple.simple_auth_manager import SimpleAuthManager


class RestrictedAuthManager(SimpleAuthManager):
    def is_authorized_dag(self, *, method, user, access_entity=None, details=None) -> bool:
        if details is not None and details.id and "private" in details.id and (user.role or "").lower() != "admin":
            return False
        return super().is_authorized_dag(method=method, user=user, access_entity=access_entity, details=details)
