// The Workers page: GET /api/v1/workers every 2 s; a worker's log on demand. Uses app.js's api() and esc().
"use strict";

function workersPage() {
  const body = $("#workers tbody");
  const mib = (bytes) => `${Math.round((bytes || 0) / 1048576)} MiB`;
  async function showLog(name) {
    const found = await api(`/workers/${enc(name)}/log?lines=50`);
    $("#worker-log-name").textContent = name;
    $("#worker-log-text").textContent = (found.files || []).map((f) => `==> ${f.path} <==\n${f.lines.join("\n")}`).join("\n\n");
    $("#worker-log").hidden = false;
  }
  async function refresh() {
    try {
      const found = await api("/workers");
      const note = $("#workers-note");
      note.hidden = !found.note;
      note.textContent = found.note || "";
      body.innerHTML = found.workers.map((w) => {
        const running = (w.processes || []).filter((p) => p.items.length)
          .map((p) => `${esc(p.pid)}: ${p.items.map(esc).join(", ")}${p.stage ? ` (${esc(p.stage)}${said(p)})` : ""}`).join("<br>");
        return `<tr data-worker="${esc(w.name)}" data-state="${esc(w.state)}" class="${w.state === "lost" ? "lost" : ""}">
          <td>${esc(w.name)}</td><td class="state">${esc(w.state)}</td><td>${esc(w.queue)}</td><td><code>${esc(versions(w))}</code></td>
          <td>${esc(w.busy)}/${esc(w.concurrency)}</td><td>${running}</td><td>${esc(w.done)}</td><td>${esc(w.failed)}</td>
          <td>${mib(w.rss)}</td><td>${w.cpu_percent == null ? "" : esc(w.cpu_percent) + "%"}</td>
          <td>${esc(w.seconds_since_heartbeat)} s ago</td><td><button class="link" data-log="${esc(w.name)}">log</button></td></tr>`;
      }).join("");
    } catch (err) {
      flash(err.message);
    }
  }
  body.addEventListener("click", (e) => { const name = e.target.dataset && e.target.dataset.log; if (name) showLog(name).catch((err) => flash(err.message)); });
  refresh();
  setInterval(refresh, 2000);
}

document.addEventListener("DOMContentLoaded", () => { if (document.body.dataset.page === "workers") workersPage(); });

// how far a process's stage call has got, where the stage says (item.progress)
function said(p) {
  if (p.total > 0) return `, ${p.done}/${p.total}`;
  return p.done > 0 ? `, ${p.done}` : "";
}

// a pinned worker's one version, or the versions a worker without a project has loaded now
function versions(w) {
  if (w.fingerprint) return w.fingerprint;
  return "any: " + ((w.loaded || []).join(", ") || "none loaded");
}
