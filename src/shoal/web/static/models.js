// The Models page: per pipeline in the registry, its versions with their aliases, traffic share,
// p50/p99 and error rate (GET /api/v1/models/NAME every 2 s), and the latest registry events.
"use strict";

function modelsPage() {
  const root = $("#models");
  const pct = (v) => (v == null ? "" : `${(v * 100).toFixed(1)}%`);
  const ms = (v) => (v == null ? "" : `${Number(v).toFixed(1)} ms`);
  function table(model) {
    const aliasesOf = {};
    for (const [name, a] of Object.entries(model.aliases)) {
      (aliasesOf[a.version] = aliasesOf[a.version] || []).push(a.weight == null ? name : `${name} ${pct(a.weight)}`);
    }
    const rows = model.versions.map((v) => {
      const t = model.traffic[v.version] || {};
      return `<tr data-version="${esc(v.version)}"><td><code>${esc(v.version)}</code></td>
        <td class="aliases">${esc((aliasesOf[v.version] || []).join(", "))}</td>
        <td>${esc(new Date(v.created_at * 1000).toISOString().slice(0, 19).replace("T", " "))}</td>
        <td>${esc(v.source || "")}</td><td>${esc(v.created_by || "")}</td>
        <td class="share">${t.share == null ? (t.role === "shadow" ? "shadow" : "") : pct(t.share)}</td>
        <td>${esc(t.answered == null ? "" : t.answered)}</td><td class="p50">${ms(t.p50_ms)}</td>
        <td class="p99">${ms(t.p99_ms)}</td><td class="errors">${pct(t.error_rate)}</td></tr>`;
    }).join("");
    const events = model.events.slice(0, 8).map((e) => `<li>${esc(new Date(e.at * 1000).toISOString().slice(0, 19).replace("T", " "))}
      <b>${esc(e.kind)}</b> <code>${esc(e.version || "")}</code> ${esc(e.by ? "by " + e.by : "")}: ${esc(e.detail || "")}</li>`).join("");
    return `<section class="card" data-pipeline="${esc(model.pipeline)}"><h2>${esc(model.pipeline)}</h2>
      <table class="models"><thead><tr><th>version</th><th>aliases</th><th>registered</th><th>source</th><th>by</th>
      <th>traffic</th><th>answered</th><th>p50</th><th>p99</th><th>errors</th></tr></thead><tbody>${rows}</tbody></table>
      <h3>History</h3><ul class="events">${events}</ul></section>`;
  }
  async function refresh() {
    try {
      const listed = await api("/models");
      if (!listed.length) {
        root.innerHTML = `<p class="card">No versions yet: <code>shoal models register PROJECT</code> or <code>shoal deploy PROJECT</code>.</p>`;
        return;
      }
      const models = await Promise.all(listed.map((m) => api(`/models/${enc(m.pipeline)}`)));
      root.innerHTML = models.map(table).join("");
    } catch (err) {
      flash(err.message);
    }
  }
  refresh();
  setInterval(refresh, 2000);
}

document.addEventListener("DOMContentLoaded", () => { if (document.body.dataset.page === "models") modelsPage(); });
