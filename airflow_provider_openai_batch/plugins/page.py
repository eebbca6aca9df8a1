"""The page and its assets: plain HTML, CSS and JavaScript shipped in the package.

No build step and no CDN (Airflow deployments are often offline). Assets are served from a
fixed list of names, never from a path the request chooses.
"""

from __future__ import annotations

from pathlib import Path

from fastapi import APIRouter, HTTPException
from fastapi.responses import Response

STATIC = Path(__file__).parent / "static"
ASSETS = {
    "app.js": "text/javascript; charset=utf-8",
    "app.css": "text/css; charset=utf-8",
}
HEADERS = {
    "Cache-Control": "no-cache",
    "X-Content-Type-Options": "nosniff",
    # Scripts and styles only from this app; no inline script, so a planted <script> could not run.
    "Content-Security-Policy": "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "connect-src 'self'; frame-ancestors 'self'; base-uri 'none'; form-action 'none'",
}

router = APIRouter()


@router.get("/", include_in_schema=False)
def page() -> Response:
    return Response((STATIC / "index.html").read_bytes(), media_type="text/html; charset=utf-8", headers=HEADERS)


@router.get("/static/{name}", include_in_schema=False)
def asset(name: str) -> Response:
    if name not in ASSETS:
        raise HTTPException(status_code=404, detail="No such asset")
    return Response((STATIC / name).read_bytes(), media_type=ASSETS[name], headers=HEADERS)
