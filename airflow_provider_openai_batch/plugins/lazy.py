"""An ASGI app that builds the real FastAPI app on its first request.

Airflow imports every plugin in every process that runs tasks (the task runner loads plugin
macros), not only in the api-server. Building the FastAPI app at import time would pull the
api-server's security and database modules into each task; this wrapper keeps the plugin's
import cheap and builds the app once, in the process that serves it.
"""

from __future__ import annotations

import importlib
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

Scope = MutableMapping[str, Any]
ASGIApp = Callable[[Scope, Callable[[], Awaitable[Any]], Callable[[Any], Awaitable[None]]], Awaitable[None]]


class LazyASGIApp:
    """Call ``factory`` (``"module:function"``) on first use and hand every request to its app."""

    def __init__(self, factory: str) -> None:
        self.factory = factory
        self._app: ASGIApp | None = None

    @property
    def app(self) -> ASGIApp:
        if self._app is None:
            module_name, _, attr = self.factory.partition(":")
            self._app = getattr(importlib.import_module(module_name), attr)()
        return self._app

    async def __call__(self, scope: Scope, receive: Any, send: Any) -> None:
        await self.app(scope, receive, send)

    def __repr__(self) -> str:
        return f"LazyASGIApp({self.factory!r})"
