// The "OpenAI Batches" page and the "OpenAI Batch" task tab (one script, no build step).
// Every text from the API is set with textContent, never parsed as HTML: error messages and
// metadata are untrusted. Rows are updated in place on each 30 s refresh (no re-render).
"use strict";

(function () {
  const REFRESH_MS = 30000;
  const params = new URLSearchParams(window.location.search);
  const taskView = params.has("task_id") && params.has("dag_id");
  const rowsById = new Map();
  let pendingCancel = null;

  const $ = (id) => document.getElementById(id);

  function el(tag, attrs, children) {
    const node = document.createElement(tag);
    for (const [key, value] of Object.entries(attrs || {})) {
      if (value === undefined || value === null) continue;
      if (key === "text") node.textContent = String(value);
      else if (key === "className") node.className = value;
      else node.setAttribute(key, String(value));
    }
    for (const child of children || []) if (child) node.appendChild(child);
    return node;
  }

  function setText(node, text) {
    const value = text === undefined || text === null ? "" : String(text);
    if (node.textContent !== value) node.textContent = value;
  }

  // Theme: follow Airflow's UI (same origin, the page runs in its iframe), else the system.
  function syncTheme() {
    let dark = null;
    try {
      const root = window.parent !== window ? window.parent.document.documentElement : null;
      if (root) {
        if (root.classList.contains("dark")) dark = true;
        else if (root.classList.contains("light")) dark = false;
        else if (root.style.colorScheme) dark = root.style.colorScheme === "dark";
      }
    } catch (error) {
      dark = null;
    }
    const mine = document.documentElement.classList;
    mine.toggle("dark", dark === true);
    mine.toggle("light", dark === false);
  }

  function watchTheme() {
    syncTheme();
    try {
      if (window.parent !== window) {
        new MutationObserver(syncTheme).observe(window.parent.document.documentElement, {
          attributes: true,
          attributeFilter: ["class", "style"],
        });
      }
    } catch (error) {
      // A parent on another origin: the system preference (CSS media query) decides.
    }
  }

  function fmtInt(n) {
    return n === undefined || n === null ? "-" : Number(n).toLocaleString();
  }

  function fmtTime(epoch) {
    if (!epoch) return "";
    return new Date(epoch * 1000).toLocaleString();
  }

  function fmtLeft(seconds) {
    if (seconds === null || seconds === undefined) return "";
    if (seconds <= 0) return "window over";
    const h = Math.floor(seconds / 3600);
    const m = Math.floor((seconds % 3600) / 60);
    return h > 0 ? `${h} h ${m} min` : `${m} min`;
  }

  async function getJSON(url, options) {
    const response = await fetch(url, Object.assign({ credentials: "same-origin" }, options || {}));
    let body = null;
    try {
      body = await response.json();
    } catch (error) {
      body = null;
    }
    if (!response.ok) {
      const detail = body && body.detail ? body.detail : response.statusText;
      throw new Error(`${response.status}: ${typeof detail === "string" ? detail : JSON.stringify(detail)}`);
    }
    return body;
  }

  function listUrl() {
    const query = new URLSearchParams();
    const status = $("filter-status").value;
    const dag = $("filter-dag").value;
    const conn = $("filter-conn").value;
    if (taskView) {
      for (const key of ["dag_id", "run_id", "task_id", "map_index"]) {
        if (params.get(key) !== null) query.set(key, params.get(key));
      }
    } else {
      if (status) query.set("status", status);
      if (dag) query.set("dag_id", dag);
      if (conn) query.set("conn_id", conn);
    }
    query.set("limit", taskView ? "10" : "500");
    return `api/batches?${query.toString()}`;
  }

  function fillSelect(select, values) {
    const current = select.value;
    const have = new Set(Array.from(select.options).map((o) => o.value));
    for (const value of values) {
      if (!have.has(value)) select.appendChild(el("option", { value: value, text: value }));
    }
    select.value = current;
  }

  function progressOf(row) {
    const counts = row.request_counts || {};
    const total = counts.total || 0;
    const done = (counts.completed || 0) + (counts.failed || 0);
    return { total: total, done: done, completed: counts.completed || 0, failed: counts.failed || 0 };
  }

  function statusCell(cell, row) {
    const status = cell.querySelector(".status") || cell.appendChild(el("span", { className: "status" }));
    setText(status, row.status);
    status.className = `status status-${row.status}`;
    let stale = cell.querySelector(".stale");
    if (row.stale && !stale) {
      stale = cell.appendChild(el("span", { className: "stale", text: "stale" }));
    } else if (!row.stale && stale) {
      stale.remove();
      stale = null;
    }
    if (stale) stale.title = row.last_read_at ? `Last read ${fmtTime(row.last_read_at)}; the API did not answer now` : "Never read from the API";
  }

  function progressCell(cell, row) {
    const p = progressOf(row);
    let bar = cell.querySelector("progress");
    if (!bar) {
      bar = cell.appendChild(el("progress", { max: 1, value: 0 }));
      cell.appendChild(el("span", { className: "pct muted" }));
    }
    bar.max = Math.max(p.total, 1);
    bar.value = p.done;
    bar.setAttribute("data-done", p.done);
    bar.setAttribute("data-completed", p.completed);
    bar.setAttribute("data-failed", p.failed);
    bar.setAttribute("data-total", p.total);
    const failed = p.failed ? `, ${fmtInt(p.failed)} failed` : "";
    setText(cell.querySelector(".pct"), `${fmtInt(p.completed)} / ${fmtInt(p.total)} completed${failed}`);
    bar.title = `${Math.round((100 * p.done) / Math.max(p.total, 1))}% processed`;
  }

  function taskLink(row) {
    const label = `${row.dag_id} / ${row.run_id} / ${row.task_id}${row.map_index >= 0 ? `[${row.map_index}]` : ""}`;
    return el("a", { href: row.links.task_instance, target: "_top", className: "ti-link", text: label });
  }

  function makeRow(row) {
    const tr = el("tr", { "data-batch-id": row.batch_id });
    const idButton = el("button", { type: "button", className: "batch-id", text: row.batch_id });
    idButton.addEventListener("click", () => openDetail(tr.getAttribute("data-batch-id")));
    tr.appendChild(el("td", {}, [idButton, el("div", { className: "muted conn" })]));
    tr.appendChild(el("td", { className: "where" }, [taskLink(row)]));
    for (const name of ["state", "progress", "failed num", "window", "tokens num", "created", "actions"]) {
      tr.appendChild(el("td", { className: name }));
    }
    return tr;
  }

  function updateRow(tr, row) {
    const cells = tr.children;
    setText(cells[0].querySelector(".conn"), row.conn_id);
    statusCell(cells[2], row);
    progressCell(cells[3], row);
    const failed = progressOf(row).failed;
    setText(cells[4], failed ? fmtInt(failed) : "0");
    cells[4].classList.toggle("failed-count", failed > 0);
    setText(cells[5], row.in_flight ? fmtLeft(row.window_left_seconds) : "");
    tr.classList.toggle("likely-to-expire", Boolean(row.likely_to_expire));
    cells[5].title = row.likely_to_expire ? "Likely to expire: under 10% of the window left and under 50% done" : "";
    setText(cells[6], row.usage ? fmtInt(row.usage.total_tokens) : "");
    setText(cells[7], fmtTime(row.created_at));
    const actions = cells[8];
    const button = actions.querySelector("button.cancel");
    if (row.can_cancel && !button) {
      const cancel = el("button", { type: "button", className: "cancel danger", text: "Cancel" });
      cancel.addEventListener("click", () => askCancel(row.batch_id, tr.getAttribute("data-dag-id")));
      actions.appendChild(cancel);
    } else if (!row.can_cancel && button) {
      button.remove();
    }
    tr.setAttribute("data-dag-id", row.dag_id);
    tr.setAttribute("data-status", row.status);
    tr.setAttribute("data-stale", row.stale ? "true" : "false");
  }

  function renderRows(rows) {
    const tbody = $("rows");
    const seen = new Set();
    let previous = null;
    for (const row of rows) {
      seen.add(row.batch_id);
      let tr = rowsById.get(row.batch_id);
      if (!tr) {
        tr = makeRow(row);
        rowsById.set(row.batch_id, tr);
      }
      updateRow(tr, row);
      const wanted = previous ? previous.nextSibling : tbody.firstChild;
      if (wanted !== tr) tbody.insertBefore(tr, wanted);
      previous = tr;
    }
    for (const [id, tr] of rowsById) {
      if (!seen.has(id)) {
        tr.remove();
        rowsById.delete(id);
      }
    }
    $("empty").hidden = rows.length > 0;
  }

  function renderTotals(totals) {
    setText($("total-in-flight"), fmtInt(totals.in_flight));
    setText($("total-requests"), `${fmtInt(totals.requests_done)} / ${fmtInt(totals.requests_total)}`);
    setText($("total-failed"), fmtInt(totals.failed_requests));
    setText($("total-tokens"), fmtInt(totals.tokens_today));
  }

  function renderProblems(problems) {
    const box = $("problems");
    box.hidden = !problems || problems.length === 0;
    setText(box, (problems || []).join("\n"));
  }

  function fact(dl, label, value, node) {
    dl.appendChild(el("dt", { text: label }));
    const dd = el("dd", {}, node ? [node] : []);
    if (!node) dd.textContent = value === undefined || value === null || value === "" ? "-" : String(value);
    dl.appendChild(dd);
  }

  function detailNode(row) {
    const root = el("div", { className: "batch-detail", "data-batch-id": row.batch_id });
    const heading = el("h2", {}, [el("code", { text: row.batch_id })]);
    root.appendChild(heading);
    const state = el("p", {});
    statusCell(state, row);
    root.appendChild(state);
    const progress = el("div", { className: "progress" });
    progressCell(progress, row);
    root.appendChild(progress);
    const dl = el("dl", { className: "facts" });
    fact(dl, "Task instance", null, taskLink(row));
    fact(dl, "Connection", row.conn_id);
    fact(dl, "Endpoint", row.endpoint);
    fact(dl, "Model", row.model);
    const counts = row.request_counts || {};
    fact(dl, "Requests", `${fmtInt(counts.completed)} completed, ${fmtInt(counts.failed)} failed of ${fmtInt(counts.total)}`);
    fact(dl, "Created", fmtTime(row.created_at));
    fact(dl, "Expires", fmtTime(row.expires_at));
    if (row.in_flight) fact(dl, "Window left", fmtLeft(row.window_left_seconds));
    if (row.usage) {
      fact(dl, "Tokens", `${fmtInt(row.usage.input_tokens)} in, ${fmtInt(row.usage.output_tokens)} out, ${fmtInt(row.usage.total_tokens)} total`);
    }
    fact(dl, "Output file", row.output_file_id);
    fact(dl, "Error file", row.error_file_id);
    if (row.links.dashboard) {
      fact(dl, "Dashboard", null, el("a", { href: row.links.dashboard, target: "_blank", rel: "noopener noreferrer", className: "dashboard-link", text: "open" }));
    }
    for (const [key, value] of Object.entries(row.metadata || {})) fact(dl, `metadata ${key}`, value);
    root.appendChild(dl);
    const errors = row.errors || [];
    if (errors.length) {
      root.appendChild(el("h3", { text: `Errors (${fmtInt(row.error_count || errors.length)})` }));
      const list = el("ul", { className: "errors" });
      for (const error of errors) {
        const where = error.line ? ` (line ${error.line})` : "";
        list.appendChild(el("li", {}, [el("code", { text: error.code || "error" }), el("span", { text: `${where}: ${error.message || ""}` })]));
      }
      root.appendChild(list);
    }
    if (row.can_cancel) {
      const cancel = el("button", { type: "button", className: "cancel danger", text: "Cancel this batch" });
      cancel.addEventListener("click", () => askCancel(row.batch_id, row.dag_id));
      root.appendChild(cancel);
    }
    return root;
  }

  async function openDetail(batchId) {
    const panel = $("detail-panel");
    const box = $("detail");
    box.replaceChildren(el("p", { className: "muted", text: "Loading..." }));
    panel.hidden = false;
    try {
      const row = await getJSON(`api/batches/${encodeURIComponent(batchId)}`);
      box.replaceChildren(detailNode(row));
    } catch (error) {
      box.replaceChildren(el("p", { className: "problems", text: String(error.message) }));
    }
  }

  function askCancel(batchId, dagId) {
    // The page runs in Airflow's sandboxed iframe, where window.confirm() is blocked: use a dialog.
    pendingCancel = batchId;
    setText($("confirm-text"), `Cancel batch ${batchId} of DAG ${dagId}? Requests not done yet are dropped; finished ones stay billed.`);
    $("confirm").showModal();
  }

  async function onConfirmClose() {
    const dialog = $("confirm");
    const batchId = pendingCancel;
    pendingCancel = null;
    if (dialog.returnValue !== "yes" || !batchId) return;
    try {
      await getJSON(`api/batches/${encodeURIComponent(batchId)}/cancel`, { method: "POST" });
      renderProblems([]);
    } catch (error) {
      renderProblems([`Cancel ${batchId} failed: ${error.message}`]);
    }
    await refresh();
  }

  async function refresh() {
    try {
      const data = await getJSON(listUrl());
      if (taskView) {
        const [row] = data.batches;
        $("task-empty").hidden = Boolean(row);
        $("task-detail").replaceChildren(row ? detailNode(row) : el("span"));
      } else {
        fillSelect($("filter-status"), data.filters.statuses);
        fillSelect($("filter-dag"), data.filters.dag_ids);
        fillSelect($("filter-conn"), data.filters.conn_ids);
        renderRows(data.batches);
        renderTotals(data.totals);
      }
      renderProblems(data.problems);
      setText($("updated"), `Updated ${new Date().toLocaleTimeString()}`);
      document.body.setAttribute("data-loaded", "true");
    } catch (error) {
      renderProblems([`Could not refresh: ${error.message}`]);
    }
  }

  function start() {
    watchTheme();
    if (taskView) {
      $("task-view").hidden = false;
      $("batches").hidden = true;
      $("filters").hidden = true;
      $("totals").hidden = true;
      setText($("title"), "OpenAI Batch");
    }
    for (const id of ["filter-status", "filter-dag", "filter-conn"]) $(id).addEventListener("change", refresh);
    $("detail-close").addEventListener("click", () => {
      $("detail-panel").hidden = true;
    });
    $("confirm").addEventListener("close", onConfirmClose);
    refresh();
    window.setInterval(refresh, REFRESH_MS);
  }

  document.addEventListener("DOMContentLoaded", start);
})();
