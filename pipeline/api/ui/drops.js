// Flow control in the dev UI: a function's options (the Functions page's column) and the events its rate limit or
// idempotency dropped (#/dropped/<function id>). Loaded before app.js, which calls these.

function droppedCell(f) {
  const flow = f.flow || {};
  const parts = [];
  if (flow.rate_limit) {
    const r = flow.rate_limit;
    parts.push(`rate limit ${r.limit} / ${r.period_ms / 1000} s${r.key ? ` per <code>${esc(r.key)}</code>` : ""}`);
  }
  if (flow.idempotency) parts.push(`idempotency <code>${esc(flow.idempotency.key)}</code>`);
  if (flow.rate_limit || flow.idempotency) {
    parts.push(`<a href="#/dropped/${encodeURIComponent(f.id)}">dropped events</a>`);
  }
  return parts.join("<br>");
}

async function droppedPage(fnId) {
  const path = `/v1/functions/${encodeURIComponent(fnId)}/dropped?limit=200`;
  const { data, total } = await api(path);
  main.innerHTML = `<h1>Dropped events</h1>
    <p class="dim">${esc(fnId)} · ${total} dropped since the API started reading (the newest 200 are kept) ·
      <a href="#/runs?function=${encodeURIComponent(fnId)}">runs</a></p>
    ${data.length ? "" : `<p class="dim">No event was dropped by this function's rate limit or idempotency.</p>`}
    <table id="dropped"><tr><th>received</th><th>event</th><th>reason</th><th>key</th><th>would-be run</th></tr>
    ${data.map((d) => `<tr><td>${when(d.received_at)}</td>
      <td><code>${esc(d.event_name)}</code> <span class="dim">${esc(d.event_id)}</span></td>
      <td>${esc(d.reason)}</td><td><code>${esc(d.key ?? "")}</code></td><td class="dim">${esc(d.run_id)}</td></tr>`).join("")}
    </table>`;
}
