"""The FastAPI app mounted under ``/openai-batch`` (built on the first request, see ``lazy.py``).

Authentication is a dependency of each router, not app-wide middleware: the webhook receiver
(``webhooks.py``, when present) is authenticated by its signature and must stay reachable
without an Airflow user.
"""

from __future__ import annotations

from fastapi import Depends, FastAPI

from airflow_provider_openai_batch.plugins.auth import get_user
from airflow_provider_openai_batch.plugins.live import LiveStates
from airflow_provider_openai_batch.plugins.page import router as page_router
from airflow_provider_openai_batch.plugins.routes import router as api_router
from airflow_provider_openai_batch.plugins.webhooks import router as webhook_router


def create_app() -> FastAPI:
    app = FastAPI(
        title="OpenAI Batches",
        description="Batches submitted by Airflow tasks, their progress and errors; cancel with permission.",
        docs_url=None,
        redoc_url=None,
        openapi_url=None,
    )
    app.state.live = LiveStates()
    authenticated = [Depends(get_user)]
    app.include_router(page_router, dependencies=authenticated)
    app.include_router(api_router, dependencies=authenticated)
    app.include_router(webhook_router)  # no Airflow login: the webhook signature is the authentication
    return app
