"""The browser half of ``make test-ui``: Airflow's UI with the plugin's page and tab, in headless Chromium.

Debian's ``/usr/bin/chromium`` driven by Playwright's Python client (no browser download), each
user in a fresh profile. Checks run on the DOM inside Airflow's iframe: rows, statuses, progress
values, links to the task instances, the cancel button (admin only), the confirmation dialog,
the audit log entry, the viewer's forged POST (403, nothing cancelled), the planted <script>
shown as text and never run, the stale mark while the API fails, and the API key in no answer.
"""

from __future__ import annotations

import contextlib
import json
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any
from urllib.parse import quote

import httpx
from playwright.sync_api import BrowserContext, Frame, Page, sync_playwright

from tests.deployment.airflow_deployment import fake_control
from tests.deployment.harness import log, require

CHROMIUM = "/usr/bin/chromium"
FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
STALE_WAIT = 100.0
"""The page refreshes every 30 s and the server's cache lives 30 s: a stale mark shows within ~60 s."""


def token(base: str, username: str, password: str) -> str:
    response = httpx.post(f"{base}/auth/token", json={"username": username, "password": password}, timeout=30)
    require(response.status_code == 201, f"POST /auth/token for {username} -> {response.status_code}")
    return response.json()["access_token"]


@contextmanager
def browser(playwright: Any, base: str, jwt: str, bodies: list[str]) -> Iterator[BrowserContext]:
    """A fresh Chromium profile logged in as the token's user (the UI's ``_token`` cookie)."""
    with tempfile.TemporaryDirectory(prefix="ui-chromium-") as profile:
        context = playwright.chromium.launch_persistent_context(
            profile, executable_path=CHROMIUM, headless=True, args=FLAGS, viewport={"width": 1400, "height": 900}
        )
        try:
            context.add_cookies([{"name": "_token", "value": jwt, "url": base}])

            def keep(response: Any) -> None:
                if "/openai-batch/" in response.url:
                    with contextlib.suppress(Exception):  # a redirect or an aborted request has no body
                        bodies.append(response.text())

            context.on("response", keep)
            yield context
        finally:
            context.close()


def plugin_frame(page: Page, path: str, timeout: float = 60.0) -> Frame:
    """The iframe Airflow's UI renders the plugin's page in, once the page's first load is done."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for frame in page.frames:
            if "/openai-batch/" in frame.url and frame.query_selector('body[data-loaded="true"]'):
                return frame
        page.wait_for_timeout(250)
    raise AssertionError(
        f"no loaded /openai-batch/ iframe in {path} after {timeout:.0f}s: {[f.url for f in page.frames]}"
    )


def attr(frame: Frame, selector: str, name: str) -> str | None:
    node = frame.query_selector(selector)
    return None if node is None else node.get_attribute(name)


def ti_path(dag_id: str, run_id: str, map_index: int = -1) -> str:
    path = f"/dags/{dag_id}/runs/{quote(run_id, safe='')}/tasks/batch"
    return f"{path}/mapped/{map_index}" if map_index >= 0 else path


def check_pages(
    base: str,
    passwords: dict[str, str],
    made: dict[str, Any],
    output: Path,
    secret: str,
    passed: list[str],
    failed: list[str],
) -> None:
    ids, runs, fake = made["ids"], made["runs"], made["fake"]
    output.mkdir(parents=True, exist_ok=True)
    tokens = {user: token(base, user, password) for user, password in passwords.items()}
    bodies: list[str] = []

    def expect(condition: Any, message: str) -> bool:
        if not condition:
            failed.append(message)
            log(f"CHECK FAILED: {message}")
        return bool(condition)

    with sync_playwright() as playwright:
        with browser(playwright, base, tokens["admin"], bodies) as admin:
            page = admin.new_page()
            page.goto(f"{base}/plugin/openai-batches")
            frame = plugin_frame(page, "/plugin/openai-batches")
            row = 'tr[data-batch-id="{}"]'
            statuses = {
                name: attr(frame, row.format(ids[name]), "data-status")
                for name in ("token_limit", "with_failures", "to_expire", "to_cancel")
            }
            statuses["in_flight"] = [attr(frame, row.format(i), "data-status") for i in ids["in_flight"]]
            ok = expect(
                statuses
                == {
                    "token_limit": "failed",
                    "with_failures": "completed",
                    "to_expire": "expired",
                    "to_cancel": "in_progress",
                    "in_flight": ["in_progress", "in_progress"],
                },
                f"row statuses on the page: {statuses}",
            )
            expired = row.format(ids["to_expire"]) + " progress"
            done = tuple(attr(frame, expired, f"data-{name}") for name in ("completed", "failed", "total"))
            ok &= expect(done == ("20", "30", "50"), f"expired batch progress (completed, failed, total): {done}")
            failures = frame.inner_text(row.format(ids["with_failures"]) + " td.failed")
            ok &= expect(failures.strip() == "3", f"failed requests of the completed batch: {failures!r}")
            first_in_flight = frame.query_selector("#rows tr")
            ok &= expect(
                first_in_flight is not None and first_in_flight.get_attribute("data-status") == "in_progress",
                "in-flight batches are not listed first",
            )
            link = attr(frame, row.format(ids["in_flight"][1]) + " a.ti-link", "href")
            expected_link = ti_path("ui_in_flight", runs["ui_in_flight"], 1)
            ok &= expect(link == expected_link, f"task instance link {link!r}, expected {expected_link!r}")
            cancels = frame.query_selector_all("button.cancel")
            ok &= expect(len(cancels) == 3, f"admin sees {len(cancels)} cancel buttons, expected 3 (in flight)")
            frame.click(row.format(ids["token_limit"]) + " button.batch-id")
            frame.wait_for_selector("#detail .batch-detail ul.errors li")
            shown = frame.inner_text("#detail ul.errors") + frame.inner_text("#detail dl.facts")
            planted_ran = frame.evaluate("() => window.__planted !== undefined")
            ok &= expect(
                "<script>window.__planted = 'error'</script>" in shown and "window.__planted = 'metadata'" in shown,
                f"the planted text is not shown as text: {shown[:300]!r}",
            )
            ok &= expect(not planted_ran, "a planted <script> ran in the page")
            frame.click("#detail-close")
            if ok:
                passed.append(
                    "nav page (in Airflow's iframe): rows in every state (failed token_limit, completed with 3 failed, "
                    "expired with 20 of 50 completed, 3 in flight listed first), task instance links, "
                    "3 cancel buttons for admin, planted <script> shown as text and never run"
                )
            shot = output / "openai-batches.png"
            page.screenshot(path=str(shot))
            log(f"screenshot {shot}")

            # Cancel from the page: the button opens the confirmation dialog; "Cancel the batch" confirms.
            frame.click(row.format(ids["to_cancel"]) + " button.cancel")
            frame.wait_for_selector("#confirm[open]")
            asked = frame.inner_text("#confirm-text")
            frame.click("#confirm-yes")
            frame.wait_for_function(
                f"() => ['cancelling', 'cancelled'].includes("
                f"document.querySelector('{row.format(ids['to_cancel'])}')?.getAttribute('data-status'))",
                timeout=30_000,
            )
            on_server = fake_control(fake, "GET", f"batches/{ids['to_cancel']}")["status"]
            audit = httpx.get(
                f"{base}/api/v2/eventLogs",
                params={"event": "openai_batch.cancel"},
                headers={"Authorization": f"Bearer {tokens['admin']}"},
                timeout=30,
            ).json()["event_logs"]
            entries = [(e["owner"], e["dag_id"], json.loads(e["extra"] or "{}").get("batch_id")) for e in audit]
            ok = expect(ids["to_cancel"] in asked and "ui_to_cancel" in asked, f"confirmation text: {asked!r}")
            ok &= expect(on_server in ("cancelling", "cancelled"), f"batch on the server after cancel: {on_server}")
            ok &= expect(entries == [("admin", "ui_to_cancel", ids["to_cancel"])], f"audit log entries: {entries}")
            if ok:
                passed.append(
                    f"admin cancelled {ids['to_cancel']} from the page after confirming; audit log: {entries}"
                )

            # The task tab of a mapped task instance.
            tab_path = ti_path("ui_in_flight", runs["ui_in_flight"], 0) + "/plugin/openai-batch"
            tab = admin.new_page()
            tab.goto(base + tab_path)
            tab_frame = plugin_frame(tab, tab_path)
            detail = tab_frame.query_selector(f'.batch-detail[data-batch-id="{ids["in_flight"][0]}"]')
            total = attr(tab_frame, ".batch-detail progress", "data-total")
            ok = expect(detail is not None, f"task tab {tab_path} does not show batch {ids['in_flight'][0]}")
            ok &= expect(total == "40", f"task tab progress total {total!r}, expected '40'")
            shot = output / "openai-batch-task-tab.png"
            tab.screenshot(path=str(shot))
            log(f"screenshot {shot}")
            if ok:
                passed.append(f"task tab at {tab_path}: batch {ids['in_flight'][0]}, progress of 40 requests")
            tab.close()

            check_stale(page, frame, fake, ids, expect, passed, output)

        with browser(playwright, base, tokens["viewer"], bodies) as viewer:
            page = viewer.new_page()
            page.goto(f"{base}/plugin/openai-batches")
            frame = plugin_frame(page, "/plugin/openai-batches")
            rows = len(frame.query_selector_all("#rows tr"))
            buttons = len(frame.query_selector_all("button.cancel"))
            target = ids["in_flight"][1]
            forged = frame.evaluate(
                "id => fetch(`api/batches/${id}/cancel`, {method: 'POST'}).then(r => r.status)", target
            )
            still = fake_control(fake, "GET", f"batches/{target}")["status"]
            ok = expect(rows >= 6 and buttons == 0, f"viewer: {rows} rows, {buttons} cancel buttons (expected none)")
            ok &= expect(forged == 403, f"viewer's forged POST answered {forged}, expected 403")
            ok &= expect(still == "in_progress", f"after the viewer's forged POST the batch is {still}")
            if ok:
                passed.append(f"viewer: {rows} rows, no cancel button; forged POST -> 403, batch still {still}")

    leaked = [body[:80] for body in bodies if secret in body]
    if expect(bodies and not leaked, f"the API key is in {len(leaked)} of {len(bodies)} plugin answers"):
        passed.append(f"the API key is in none of the {len(bodies)} plugin answers the browsers received")


def check_stale(
    page: Page,
    frame: Frame,
    fake: str,
    ids: dict[str, Any],
    expect: Callable[[Any, str], bool],
    passed: list[str],
    output: Path,
) -> None:
    """While the API answers 500 to batch reads, in-flight rows keep their state with a "stale" mark."""
    fake_control(fake, "POST", "faults", {"rate_500": 1.0, "methods": "GET", "path_prefix": "/v1/batches"})
    selector = f'tr[data-batch-id="{ids["in_flight"][0]}"][data-stale="true"] .stale'
    try:
        frame.wait_for_selector(selector, timeout=STALE_WAIT * 1000)
        status = frame.get_attribute(f'tr[data-batch-id="{ids["in_flight"][0]}"]', "data-status")
        problems = frame.inner_text("#problems")
        page.screenshot(path=str(output / "openai-batches-stale.png"))
        ok = expect(status == "in_progress", f"a stale row shows {status}, expected its last state in_progress")
        ok &= expect("could not" in problems or "did not answer" in problems, f"problem line: {problems!r}")
        if ok:
            passed.append(
                f"API failing: row kept its last state ({status}) with a 'stale' mark; page says {problems!r}"
            )
    except Exception as error:
        expect(False, f"no stale mark within {STALE_WAIT:.0f}s while the API failed: {error}")
    finally:
        fake_control(fake, "DELETE", "faults")
