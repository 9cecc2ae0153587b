// Flow control in the dev UI (issue 21): a function's flow settings (its `flow` entries from /v1/functions) and
// the pending debounces and batches (/v1/pending), each cancellable. Loaded before app.js, which calls these.

function pendingCell(f) {
  const flow = f.flow || {};
  const parts = ["debounce", "batch_events"].filter((name) => flow[name]).map((name) =>
    `${esc(name)} <span class="dim">${esc(Object.entries(flow[name]).filter(([, v]) => v !== null).map(([k, v]) => `${k}=${v}`).join(" "))}</span>`);
  if (parts.length) parts.push(`<a href="#/pending?function=${encodeURIComponent(f.id)}">pending</a>`);
  return parts.join("<br>");
}

async function pendingPage(query) {
  const fn = new URLSearchParams(query).get("function");
  main.innerHTML = `<h1>Pending debounces and batches${fn ? ` of ${esc(fn)}` : ""}</h1>
    <p class="dim">Events waiting to become one run: a debounce starts its run once its period passes without an event
    (or at its timeout), a batch when it is full or at its timeout.</p>
    <table id="pending-rows"><tr><th>kind</th><th>function</th><th>key</th><th>run id</th><th>events</th><th>first received</th><th>starts at</th><th></th></tr></table>`;
  async function load() {
    const { data } = await api(`/v1/pending${fn ? `?function=${encodeURIComponent(fn)}` : ""}`);
    const table = $("#pending-rows");
    if (!table) return;
    table.querySelectorAll("tr[data-pending]").forEach((tr) => tr.remove());
    table.insertAdjacentHTML("beforeend", data.map((p) => `<tr data-pending="${esc(p.run_id)}"><td>${esc(p.kind)}</td>
      <td><a href="#/runs?function=${encodeURIComponent(p.function_id)}">${esc(p.function_id)}</a></td><td><code>${esc(p.key || "")}</code></td>
      <td><code>${esc(p.run_id)}</code></td><td class="count">${p.size}${p.later ? ` (+${p.later} next)` : ""}</td>
      <td>${when(p.first_received_at)}</td><td>${when(p.deadline_at)}</td>
      <td><button data-cancel="${esc(p.run_id)}">Cancel</button></td></tr>`).join(""));
    table.querySelectorAll("[data-cancel]").forEach((b) => b.addEventListener("click", async () => {
      try { await api(`/v1/pending/${encodeURIComponent(b.dataset.cancel)}`, { method: "DELETE" }); toast("cancelling"); load(); } catch (err) { toast(err.message); }
    }));
  }
  await load();
  refresh = setInterval(load, 1500);
}
