// The dev UI: plain JavaScript, no build step. Pages are hash routes; data comes from the API (/v1, /e).
"use strict";

const $ = (sel) => document.querySelector(sel);
const main = $("#main");
const keys = { signing: sessionStorage.getItem("signingKey") || "", event: sessionStorage.getItem("eventKey") || "dev" };
let refresh = null;

function esc(value) {
  return String(value ?? "").replace(/[&<>"']/g, (c) => ({ "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;" }[c]));
}
function when(ms) { return ms ? new Date(ms).toLocaleTimeString() : ""; }
function took(a, b) { return a && b ? `${((b - a) / 1000).toFixed(2)} s` : ""; }
function badge(status) { return `<span class="status ${esc(status)}">${esc(status)}</span>`; }
function json(value) { return `<pre>${esc(JSON.stringify(value, null, 2))}</pre>`; }
function toast(text) { const t = $("#toast"); t.textContent = text; t.style.display = "block"; setTimeout(() => { t.style.display = "none"; }, 3000); }

async function api(path, options = {}) {
  const headers = Object.assign({ "Content-Type": "application/json" }, options.headers || {});
  if (keys.signing) headers.Authorization = `Bearer ${keys.signing}`;
  const res = await fetch(path, Object.assign({}, options, { headers }));
  const body = await res.json().catch(() => ({}));
  if (!res.ok) throw new Error(body.error || `${res.status}`);
  return body;
}

$("#signing-key").value = keys.signing;
$("#event-key").value = keys.event;
$("#keys").addEventListener("submit", (e) => {
  e.preventDefault();
  keys.signing = $("#signing-key").value; keys.event = $("#event-key").value || "dev";
  sessionStorage.setItem("signingKey", keys.signing); sessionStorage.setItem("eventKey", keys.event);
  route();
});

// -- pages ------------------------------------------------------------------------------------------------------

// a function's flow-control settings, one line per option (as pipeline/api/flow_settings.py describes them)
function flowLines(flow) {
  const lines = [];
  if (flow.throttle) {
    const t = flow.throttle;
    lines.push(`throttle ${t.limit} per ${t.period_ms} ms, burst ${t.burst}${t.strict ? " (strict)" : ""}${t.key ? ` per ${t.key}` : ""}`);
  }
  if (flow.priority) lines.push(`priority ${flow.priority.run}`);
  if (flow.singleton) lines.push(`singleton ${flow.singleton.mode}${flow.singleton.key ? ` per ${flow.singleton.key}` : ""}`);
  return lines;
}

async function functionsPage() {
  const { data } = await api("/v1/functions");
  main.innerHTML = `<h1>Functions</h1><table><tr><th>id</th><th>triggers</th><th>cancel rules</th><th>concurrency</th><th>flow control</th><th>runs</th></tr>
    ${data.map((f) => `<tr><td><a href="#/runs?function=${encodeURIComponent(f.id)}">${esc(f.id)}</a></td>
      <td>${f.triggers.map(esc).join("<br>")}</td>
      <td>${f.cancel.map((c) => `${esc(c.event)} <span class="dim">${esc(c.if || "")}</span>`).join("<br>")}</td>
      <td>${f.concurrency.map((c) => `${c.limit}${c.key ? ` per ${esc(c.key)}` : ""}`).join("<br>")}</td>
      <td>${[droppedCell(f), pendingCell(f), ...flowLines(f.flow || {}).map(esc)].filter(Boolean).join("<br>")}</td>
      <td>${f.runs}</td></tr>`).join("")}</table>`;
}

async function sourcesPage() {
  const { data } = await api("/v1/sources");
  main.innerHTML = `<h1>Sources</h1>${data.length ? "" : `<p class="dim">No sources: declare them with client.create_source(...).</p>`}
    <table><tr><th>id</th><th>topic</th><th>event name</th><th>data</th><th>id</th><th>if</th><th>lag</th></tr>
    ${data.map((s) => `<tr><td>${esc(s.id)}</td><td>${esc(s.topic)}</td><td><code>${esc(s.name)}</code></td>
      <td><code>${esc(s.data)}</code></td><td><code>${esc(s.event_id || "(from the record)")}</code></td>
      <td><code>${esc(s.if || "")}</code></td><td class="lag">${s.lag ?? "?"}</td></tr>`).join("")}</table>`;
  refresh = setInterval(async () => {
    const fresh = (await api("/v1/sources").catch(() => ({ data: [] }))).data;
    document.querySelectorAll("td.lag").forEach((td, i) => { if (fresh[i]) td.textContent = fresh[i].lag ?? "?"; });
  }, 2000);
}

// The result of the app's last POST /fn/register, whoever started it (the app, the CLI, dev -u, this page)
function lastSync(s) {
  if (!s) return `<span class="dim">not recorded</span>`;
  if (s.ok) return `${when(s.at)} ok${s.modified ? " (changed)" : ""}`;
  return `${when(s.at)} <span class="status Failed">refused</span> ${s.status}<br>${s.problems.map(esc).join("<br>")}`;
}

async function appsPage() {
  const { data, syncs } = await api("/v1/apps");
  main.innerHTML = `<h1>Apps over HTTP</h1>
    <form id="sync"><input name="url" size="50" placeholder="http://127.0.0.1:3000/api/inngest" required>
      <button type="submit">Sync</button></form>
    <table><tr><th>app</th><th>URL</th><th>SDK</th><th>synced</th><th>last sync</th><th>functions</th></tr>
    ${data.map((a) => `<tr><td>${esc(a.id)}</td><td>${esc(a.url)}</td><td>${esc(a.sdk)}</td><td>${a.synced_at ? when(a.synced_at) : "never"}</td>
      <td class="last-sync">${lastSync(a.last_sync)}</td>
      <td>${a.functions.map((f) => `<a href="#/runs?function=${encodeURIComponent(f.id)}">${esc(f.id)}</a>
        <span class="dim">${f.triggers.map(esc).join(", ")}</span>`).join("<br>")}</td></tr>`).join("")}</table>
    <h2>Syncs asked from here</h2>
    <table><tr><th>URL</th><th>when</th><th>result</th></tr>
    ${(syncs || []).map((s) => `<tr><td>${esc(s.url)}</td><td>${when(s.at)}</td>
      <td>${s.ok ? "synced" : `<span class="status Failed">failed</span>`} ${json(s.answer)}</td></tr>`).join("")}</table>`;
  $("#sync").addEventListener("submit", async (e) => {
    e.preventDefault();
    const url = new FormData(e.target).get("url");
    try {
      const answer = await api("/v1/apps/sync", { method: "POST", body: JSON.stringify({ url }) });
      toast(answer.ok ? "synced" : "the sync failed: see below");
    } catch (err) { toast(err.message); }
    await appsPage();
  });
}

async function runsPage(params) {
  const fns = (await api("/v1/functions")).data;
  const q = new URLSearchParams(params);
  const status = q.get("status") || "", fn = q.get("function") || "", since = q.get("since") || "";
  main.innerHTML = `<h1>Runs</h1>
    <form class="filters" id="run-filters">
      <select name="function"><option value="">all functions</option>${fns.map((f) => `<option ${f.id === fn ? "selected" : ""}>${esc(f.id)}</option>`).join("")}</select>
      <select name="status"><option value="">any status</option>${["Queued", "Running", "Sleeping", "Waiting", "Completed", "Failed", "Cancelled", "Skipped"].map((s) => `<option ${s === status ? "selected" : ""}>${s}</option>`).join("")}</select>
      <label class="dim">since <input type="datetime-local" name="since" value="${esc(since)}"></label>
      <button type="submit">Filter</button>
    </form>
    <table id="runs"><tr><th>run</th><th>function</th><th>status</th><th>queued</th><th>took</th><th>event</th></tr></table>
    <p><button id="more" hidden>Load more</button></p>`;
  $("#run-filters").addEventListener("submit", (e) => {
    e.preventDefault();
    const f = new FormData(e.target);
    location.hash = "#/runs?" + new URLSearchParams([...f.entries()].filter(([, v]) => v)).toString();
  });
  const base = new URLSearchParams();
  if (fn) base.set("function", fn);
  if (status) base.set("status", status);
  if (since) base.set("since", String(new Date(since).getTime()));
  let cursor = null;
  const row = (r) => `<tr data-run="${esc(r.run_id)}"><td><a href="#/run/${esc(r.run_id)}">${esc(r.run_id)}</a></td>
      <td>${esc(r.function_id)}</td><td>${badge(r.status)}${r.pending_step ? ` <span class="dim">${esc(r.pending_step)}</span>` : ""}</td>
      <td>${when(r.queued_at)}</td><td>${took(r.started_at || r.queued_at, r.ended_at)}</td><td><code>${esc(r.event_id)}</code></td></tr>`;
  async function load(first) {
    const p = new URLSearchParams(base);
    p.set("limit", "50");
    if (!first && cursor) p.set("cursor", cursor);
    const page = await api("/v1/runs?" + p.toString());
    const table = $("#runs");
    if (!table) return;
    if (first) table.querySelectorAll("tr[data-run]").forEach((tr) => tr.remove());
    table.insertAdjacentHTML("beforeend", page.data.map(row).join(""));
    if (first || !cursor) cursor = page.next;
    else cursor = page.next;
    $("#more").hidden = !cursor;
  }
  $("#more").addEventListener("click", () => load(false));
  await load(true);
  refresh = setInterval(() => { if (!cursor || document.querySelectorAll("#runs tr[data-run]").length <= 50) load(true); }, 1500);
}

async function runPage(id) {
  let detail;
  try {
    detail = await api(`/v1/runs/${encodeURIComponent(id)}/detail`);
  } catch (err) {
    if (!/not found/.test(err.message)) throw err;
    // a run just started (a replay, a sent event) shows up once its owner has written it
    main.innerHTML = `<h1>Run <code>${esc(id)}</code></h1><p class="dim">waiting for the run to appear…</p>`;
    refresh = setInterval(() => { if (location.hash === `#/run/${id}`) route(); }, 1000);
    return;
  }
  const { data: run, caused } = detail;
  const active = !["Completed", "Failed", "Cancelled", "Skipped"].includes(run.status);
  const start = run.run_started_at || run.queued_at;
  const end = run.ended_at || Date.now();
  const span = Math.max(1, end - start);
  let prev = start;
  const steps = run.steps.map((s) => {
    const from = s.started_at || prev; prev = s.completed_at;
    const left = ((from - start) / span) * 100, width = Math.max(0.5, ((s.completed_at - from) / span) * 100);
    return `<div class="step"><div><strong>${esc(s.id)}</strong> <span class="dim">${esc(s.op)}</span></div>
      <div class="track"><div class="bar ${esc(s.op)}" style="left:${left}%;width:${width}%"></div></div>
      <div class="dim">${took(from, s.completed_at)}</div></div>
      <details><summary class="dim">output</summary>${json(s.output)}</details>`;
  }).join("");
  const cancelled = caused.find((c) => c.event && c.event.name === "inngest/function.cancelled");
  main.innerHTML = `<h1>Run <code>${esc(run.run_id)}</code> ${badge(run.status)}</h1>
    <p class="dim">${esc(run.function_id)} · queued ${when(run.queued_at)} · ${run.ended_at ? `ended ${when(run.ended_at)}` : "running"}
      ${run.replay_of ? ` · replay of <a href="#/run/${esc(run.replay_of)}">${esc(run.replay_of)}</a>` : ""}</p>
    <p>${active ? `<button class="danger" id="cancel">Cancel run</button>` : ""} <button id="replay">Replay</button></p>
    <h2>Timeline</h2><div class="timeline">${steps || '<p class="dim">no step yet</p>'}
      ${run.pending_step ? `<p class="dim">waiting in <strong>${esc(run.pending_step)}</strong>${run.wake_at ? ` until ${when(run.wake_at)}` : ""}</p>` : ""}</div>
    <div class="cards">
      <div class="card"><h2>Triggering event</h2>${json(run.event)}</div>
      <div class="card"><h2>Output / error</h2>${json(run.error || run.output)}</div>
      ${run.status === "Cancelled" ? `<div class="card" id="cancellation"><h2>Cancellation</h2>
        <p>by <strong>${esc(run.cancel_reason)}</strong> ${run.cancel_source ? `(<code>${esc(run.cancel_source)}</code>)` : ""}</p>
        ${cancelled ? json(cancelled.event) : ""}</div>` : ""}
      ${run.status === "Skipped" ? `<div class="card" id="skipped"><h2>Skipped</h2>
        <p>by <strong>${esc(run.cancel_reason)}</strong>: run <a href="#/run/${esc(run.cancel_source)}"><code>${esc(run.cancel_source)}</code></a> of its key was active</p></div>` : ""}
    </div>
    <h2>Runs it caused</h2>
    <table id="caused"><tr><th>run</th><th>function</th><th>status</th><th>by</th></tr>
    ${caused.map((c) => `<tr><td><a href="#/run/${esc(c.run_id)}">${esc(c.run_id)}</a></td><td>${esc(c.function_id)}</td>
      <td>${badge(c.status)}</td><td>${esc(c.event && c.event.name)}</td></tr>`).join("")}</table>`;
  const cancel = $("#cancel");
  if (cancel) cancel.addEventListener("click", async () => { await api(`/v1/runs/${encodeURIComponent(id)}`, { method: "DELETE" }); toast("cancel sent"); });
  $("#replay").addEventListener("click", async () => {
    try { const r = await api(`/v1/runs/${encodeURIComponent(id)}/replay`, { method: "POST" }); location.hash = `#/run/${r.data.run_id}`; }
    catch (err) { toast(`replay: ${err.message}`); }
  });
  if (active) refresh = setInterval(() => { if (location.hash === `#/run/${id}`) runPage(id).catch(() => {}); }, 1000);
}

async function eventsPage() {
  main.innerHTML = `<h1>Events</h1>
    <form class="filters" id="send"><input name="name" placeholder="event name" required size="32">
      <input name="data" placeholder='data, e.g. {"importId": "abc"}' size="48"><button type="submit">Send test event</button></form>
    <table id="events"><tr><th>received</th><th>name</th><th>id</th><th>data</th><th>runs started</th></tr></table>`;
  $("#send").addEventListener("submit", async (e) => {
    e.preventDefault();
    const f = new FormData(e.target);
    let data = {};
    try { data = f.get("data") ? JSON.parse(f.get("data")) : {}; } catch (err) { toast("data is not JSON"); return; }
    try {
      const r = await api(`/e/${encodeURIComponent(keys.event)}`, { method: "POST", body: JSON.stringify({ name: f.get("name"), data }) });
      toast(`sent ${r.ids[0]}`);
    } catch (err) { toast(`send: ${err.message}`); }
  });
  async function load() {
    const { data } = await api("/v1/events?limit=100");
    const table = $("#events");
    if (!table) return;
    table.querySelectorAll("tr[data-event]").forEach((tr) => tr.remove());
    table.insertAdjacentHTML("beforeend", data.map((ev) => `<tr data-event="${esc(ev.id)}"><td>${when(ev.received_at)}</td>
      <td>${esc(ev.name)}</td><td><code>${esc(ev.id)}</code></td><td><code>${esc(JSON.stringify(ev.data)).slice(0, 120)}</code></td>
      <td>${ev.runs.map((r) => `<a href="#/run/${esc(r.run_id)}">${esc(r.function_id)}</a> ${badge(r.status)}`).join("<br>")}</td></tr>`).join(""));
  }
  await load();
  refresh = setInterval(load, 1500);
}

async function cancellationsPage() {
  const fns = (await api("/v1/functions")).data;
  main.innerHTML = `<h1>Bulk cancellations</h1>
    <form class="filters" id="bulk">
      <select name="function" required>${fns.filter((f) => f.app_id).map((f) => `<option value="${esc(f.id)}">${esc(f.id)}</option>`).join("")}</select>
      <input name="if" placeholder="if (CEL over event), optional" size="40"><button type="submit">Cancel matching runs started until now</button></form>
    <table id="bulk-rows"><tr><th>id</th><th>function</th><th>if</th><th>created</th><th>cancelled runs</th><th></th></tr></table>`;
  async function load() {
    const { data } = await api("/v1/cancellations");
    const table = $("#bulk-rows");
    if (!table) return;
    table.querySelectorAll("tr[data-bulk]").forEach((tr) => tr.remove());
    table.insertAdjacentHTML("beforeend", data.map((c) => `<tr data-bulk="${esc(c.id)}"><td><code>${esc(c.id)}</code></td>
      <td>${esc(c.function_id)}</td><td>${esc(c.if || "")}</td><td>${when(c.created_at)}</td><td class="count">${c.cancelled_runs}</td>
      <td>${c.stopped_at ? `stopped ${when(c.stopped_at)}` : `<button data-stop="${esc(c.id)}">Stop</button>`}</td></tr>`).join(""));
    table.querySelectorAll("[data-stop]").forEach((b) => b.addEventListener("click", async () => {
      await api(`/v1/cancellations/${encodeURIComponent(b.dataset.stop)}`, { method: "DELETE" }); load();
    }));
  }
  $("#bulk").addEventListener("submit", async (e) => {
    e.preventDefault();
    const f = new FormData(e.target);
    const fn = fns.find((x) => x.id === f.get("function"));
    const body = { app_id: fn.app_id, function_id: fn.fn_id, started_before: Date.now() };
    if (f.get("if")) body.if = f.get("if");
    try { await api("/v1/cancellations", { method: "POST", body: JSON.stringify(body) }); load(); } catch (err) { toast(err.message); }
  });
  await load();
  refresh = setInterval(load, 1500);
}

// -- routing ----------------------------------------------------------------------------------------------------

async function route() {
  if (refresh) { clearInterval(refresh); refresh = null; }
  const hash = location.hash.slice(1) || "/runs";
  const [path, query] = hash.split("?");
  const parts = path.split("/").filter(Boolean);
  document.querySelectorAll("nav a").forEach((a) => a.classList.toggle("active", a.dataset.nav === parts[0] || (parts[0] === "run" && a.dataset.nav === "runs") || (parts[0] === "dropped" && a.dataset.nav === "functions")));
  try {
    if (parts[0] === "functions") await functionsPage();
    else if (parts[0] === "apps") await appsPage();
    else if (parts[0] === "run") await runPage(decodeURIComponent(parts[1]));
    else if (parts[0] === "events") await eventsPage();
    else if (parts[0] === "cancellations") await cancellationsPage();
    else if (parts[0] === "sources") await sourcesPage();
    else if (parts[0] === "dropped") await droppedPage(decodeURIComponent(parts[1]));
    else if (parts[0] === "pending") await pendingPage(query || "");
    else await runsPage(query || "");
  } catch (err) {
    main.innerHTML = `<h1>Could not load this page</h1><p>${esc(err.message)}</p><p class="dim">Is the signing key set (top right)?</p>`;
  }
}
window.addEventListener("hashchange", route);
route();
