"""Who may see and cancel what: Airflow's own user and auth manager, per DAG.

Every router of the app depends on ``current_user`` (Airflow's ``get_user``: the bearer token
or the UI's ``_token`` cookie, 401 without), so each route is protected on its own and the
webhook receiver, which is authenticated by its signature instead, can live in the same app.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import Depends

from airflow_provider_openai_batch.compat import get_auth_manager, get_user

BaseUser = Any
"""Airflow's ``BaseUser`` (the auth manager's user object); only its ``get_name()`` is used here."""

CurrentUser = Annotated[BaseUser, Depends(get_user)]
"""The authenticated Airflow user of a request; a router that depends on it answers 401 without one."""


def readable_dag_ids(user: BaseUser) -> set[str]:
    """The DAGs whose runs and tasks ``user`` may read (the auth manager decides, per DAG)."""
    return set(get_auth_manager().get_authorized_dag_ids(user=user, method="GET"))


def editable_dag_ids(user: BaseUser) -> set[str]:
    """The DAGs whose runs ``user`` may change (cancelling a batch is such a change).

    One question to the auth manager (a metadata query) for a whole listing: asked per row, a
    page of 1,000 batches cost 1,000 queries, seconds of server time (``benchmarks/ui_api.py``).
    """
    return set(get_auth_manager().get_authorized_dag_ids(user=user, method="PUT"))


def may_edit_dag(user: BaseUser, dag_id: str) -> bool:
    """Whether ``user`` may change ``dag_id``'s runs (for one batch; a listing uses ``editable_dag_ids``)."""
    return dag_id in editable_dag_ids(user)


def user_name(user: BaseUser) -> str:
    """The name Airflow's audit log shows for ``user``."""
    return user.get_name()
