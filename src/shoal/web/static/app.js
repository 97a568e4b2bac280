// shoal web UI: plain JavaScript, no framework, no CDN. Each page's shell comes from the server;
// the data comes from the REST API under /api/v1 and, on the job page, Server-Sent Events.
"use strict";

const API = "/api/v1";
//: the states a job ends in: nothing more happens to it (unless it is retried)
const FINISHED = ["succeeded", "completed_with_errors", "failed", "cancelled"];
const $ = (sel, root = document) => root.querySelector(sel);
const esc = (s) => String(s ?? "").replace(/[&<>"']/g, (c) => ({ "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;" })[c]);
const enc = encodeURIComponent;

async function api(path, options = {}) {
  const response = await fetch(API + path, { credentials: "same-origin", ...options });
  if (response.status === 401 || response.status === 403) {
    if (document.body.dataset.page !== "login") location.href = "/login?next=" + enc(location.pathname + location.search);
  }
  if (!response.ok) {
    let detail = response.statusText;
    try {
      const body = await response.json();
      detail = typeof body.detail === "string" ? body.detail : body.detail.map((e) => `${e.loc.join(".")}: ${e.msg}`).join("; ");
    } catch (_) { /* not JSON */ }
    throw new Error(detail);
  }
  return response.status === 204 ? null : response.json();
}

function flash(message, kind = "error") {
  const box = $("#flash");
  box.textContent = message;
  box.className = "flash " + kind;
  box.hidden = false;
}

function duration(seconds) {
  if (seconds == null || !isFinite(seconds)) return "–";
  seconds = Math.round(seconds);
  if (seconds < 60) return seconds + " s";
  const m = Math.floor(seconds / 60), s = seconds % 60;
  if (m < 60) return `${m} min ${s} s`;
  return `${Math.floor(m / 60)} h ${m % 60} min`;
}

const when = (epoch) => new Date(epoch * 1000).toLocaleString();

// A result record as table cells: its keys, a nested object's one level down as `stage.key`.
function flatten(result) {
  if (result == null) return {};
  if (typeof result !== "object" || Array.isArray(result)) return { result };
  const cells = {};
  for (const [key, value] of Object.entries(result)) {
    if (value && typeof value === "object" && !Array.isArray(value)) {
      for (const [inner, v] of Object.entries(value)) cells[`${key}.${inner}`] = v;
    } else cells[key] = value;
  }
  return cells;
}

const cellText = (v) => (v == null ? "" : typeof v === "string" ? v : JSON.stringify(v));

function compareCells(a, b) {
  if (typeof a === "number" && typeof b === "number") return a - b;
  return cellText(a).localeCompare(cellText(b), undefined, { numeric: true });
}

// A video the browser cannot play becomes a note with a download link instead of a black box:
// either its codec (OpenCV's default mp4v plays in no browser; WebM VP8/VP9 and H.264 MP4 do) or
// the file could not be fetched, which a second request tells apart.
function watchVideos(root) {
  for (const video of root.querySelectorAll("video")) {
    const replace = async () => {
      const name = decodeURIComponent(video.src.split("/").pop());
      let why = `This browser cannot play ${name} (its codec); WebM (VP8/VP9) or H.264 MP4 would preview here.`;
      try {
        const answer = await fetch(video.src);
        answer.body?.cancel();
        if (!answer.ok) why = `Could not load ${name}: HTTP ${answer.status}.`;
      } catch (e) { why = `Could not load ${name}: ${e.message}.`; }
      const note = document.createElement("p");
      const link = document.createElement("a");
      note.className = "unplayable";
      link.href = video.src;
      link.download = name;
      link.textContent = "Download it";
      note.append(why + " ", link);
      video.replaceWith(note);
    };
    if (video.error) replace();
    else video.addEventListener("error", replace, { once: true });
  }
}

function bar(counts, big = false) {
  const total = Math.max(counts.total, 1);
  const ok = (100 * counts.succeeded) / total, bad = (100 * counts.failed) / total;
  return `<div class="progress${big ? " big" : ""}" title="${counts.succeeded} succeeded, ${counts.failed} failed of ${counts.total}">` +
    `<span class="ok" style="width:${ok}%"></span><span class="bad" style="width:${bad}%"></span></div>`;
}

function setBar(el, counts) {
  const total = Math.max(counts.total, 1);
  el.querySelector(".ok").style.width = (100 * counts.succeeded) / total + "%";
  el.querySelector(".bad").style.width = (100 * counts.failed) / total + "%";
}

function stateLabel(job) {
  return job.queued ? "queued" : job.state;
}

// --- jobs ------------------------------------------------------------------------------------
function jobsPage() {
  const params = new URLSearchParams(location.search);
  let page = Number(params.get("page") || 1);
  const filter = $("#state-filter");
  filter.value = params.get("state") || "";
  const pipeline = params.get("pipeline");
  async function load() {
    const q = new URLSearchParams({ page, size: 20 });
    if (filter.value) q.set("state", filter.value);
    if (pipeline) q.set("pipeline", pipeline);
    try {
      const data = await api("/jobs?" + q);
      const rows = data.jobs.map((j) => `<tr data-job="${esc(j.id)}">
        <td><a href="/jobs/${enc(j.id)}">${esc(j.id)}</a></td><td>${esc(j.pipeline)}</td>
        <td><span class="badge ${esc(stateLabel(j))}">${esc(stateLabel(j))}</span></td>
        <td class="wide">${bar(j.counts)}</td>
        <td class="num">${j.counts.succeeded + j.counts.failed} / ${j.counts.total}${j.counts.failed ? ` <span class="bad-text">(${j.counts.failed} failed)</span>` : ""}</td>
        <td>${esc(when(j.created_at))}</td><td>${duration(j.duration_s)}</td></tr>`);
      $("#jobs").innerHTML = rows.join("") || `<tr><td colspan="7" class="muted">No jobs yet. <a href="/submit">Submit one.</a></td></tr>`;
      const pages = Math.max(1, Math.ceil(data.total / data.size));
      $("#page-info").textContent = `page ${page} of ${pages} · ${data.total} jobs`;
      $("#prev").disabled = page <= 1;
      $("#next").disabled = page >= pages;
    } catch (e) { flash(e.message); }
  }
  filter.addEventListener("change", () => { page = 1; load(); });
  $("#prev").addEventListener("click", () => { page--; load(); });
  $("#next").addEventListener("click", () => { page++; load(); });
  load();
  setInterval(load, 2000);
}

// --- submit ----------------------------------------------------------------------------------
function submitPage() {
  const form = $("#submit-form");
  if (!form) return;
  let files = [];
  let tab = "files";
  const drop = $("#drop"), input = $("#files");
  function show() {
    $("#chosen").innerHTML = files.map((f, i) => `<li>${esc(f.name)} <span class="muted">${(f.size / 1024).toFixed(1)} KiB</span> <button type="button" class="link" data-i="${i}">remove</button></li>`).join("");
  }
  function add(list) { files = files.concat(Array.from(list)); show(); }
  $("#chosen").addEventListener("click", (e) => { if (e.target.dataset.i) { files.splice(Number(e.target.dataset.i), 1); show(); } });
  input.addEventListener("change", () => { add(input.files); input.value = ""; });
  ["dragenter", "dragover"].forEach((t) => drop.addEventListener(t, (e) => { e.preventDefault(); drop.classList.add("over"); }));
  ["dragleave", "drop"].forEach((t) => drop.addEventListener(t, (e) => { e.preventDefault(); drop.classList.remove("over"); }));
  drop.addEventListener("drop", (e) => add(e.dataTransfer.files));
  document.addEventListener("paste", (e) => {
    if (tab === "files" && e.clipboardData.files.length) add(e.clipboardData.files);
  });
  document.querySelectorAll(".tab").forEach((b) => b.addEventListener("click", () => {
    tab = b.dataset.tab;
    document.querySelectorAll(".tab").forEach((x) => x.classList.toggle("on", x === b));
    document.querySelectorAll(".pane").forEach((p) => { p.hidden = p.dataset.pane !== tab; });
  }));
  function options() {
    const o = {};
    if ($("#retries").value !== "") o.retries = Number($("#retries").value);
    if ($("#timeout").value !== "") o.timeout = Number($("#timeout").value);
    if ($("#limit").value !== "") o.limit = Number($("#limit").value);
    if ($("#new").checked) o.new = true;
    return o;
  }
  function upload(data) {
    return new Promise((resolve, reject) => {
      const xhr = new XMLHttpRequest();
      const bar = $("#upload-progress");
      xhr.open("POST", API + "/jobs/upload");
      xhr.upload.onprogress = (e) => { if (e.lengthComputable) { bar.hidden = false; bar.value = e.loaded / e.total; } };
      xhr.onload = () => {
        let body = {};
        try { body = JSON.parse(xhr.responseText); } catch (_) { /* not JSON */ }
        if (xhr.status >= 200 && xhr.status < 300) resolve(body);
        else reject(new Error(typeof body.detail === "string" ? body.detail : JSON.stringify(body.detail || xhr.statusText)));
      };
      xhr.onerror = () => reject(new Error("the upload failed: is the server up?"));
      xhr.send(data);
    });
  }
  form.addEventListener("submit", async (e) => {
    e.preventDefault();
    const pipeline = $("#pipeline").value;
    const button = $("#submit");
    button.disabled = true;
    try {
      let job;
      if (tab === "files") {
        if (!files.length) throw new Error("Choose or drop some files first.");
        const limit = Number(document.body.dataset.maxUpload);
        const size = files.reduce((sum, f) => sum + f.size, 0);
        if (limit && size > limit) throw new Error(`These files add up to ${(size / 2 ** 20).toFixed(1)} MiB: over the server's upload limit of ${(limit / 2 ** 20).toFixed(1)} MiB.`);
        const data = new FormData();
        data.append("pipeline", pipeline);
        data.append("options", JSON.stringify(options()));
        files.forEach((f) => data.append("files", f, f.name));
        $("#upload-note").textContent = `uploading ${files.length} files…`;
        job = await upload(data);
      } else {
        const inputs = $("#uris").value.split("\n").map((s) => s.trim()).filter((s) => s && !s.startsWith("#"));
        if (!inputs.length) throw new Error("Paste at least one path or URL.");
        job = await api("/jobs", { method: "POST", headers: { "Content-Type": "application/json" }, body: JSON.stringify({ pipeline, inputs, options: options() }) });
      }
      location.href = "/jobs/" + enc(job.id);
    } catch (err) {
      flash(err.message);
      $("#upload-note").textContent = "";
      button.disabled = false;
    }
  });
}

// --- job -------------------------------------------------------------------------------------
function jobPage() {
  const id = document.body.dataset.job;
  const base = `/jobs/${enc(id)}`;
  const RESULTS_SIZE = 50;
  let failedShown = 20, previewsShown = 12, lastFailed = -1, lastSucceeded = -1;
  let pendingRefresh = null, finished = false, askingStart = false, previewsHtml = null;
  // when the running job's latest run began, on this browser's clock (the server counts the
  // seconds, so a skewed clock here does not matter); null: nothing ticks
  let runStart = null;
  // the results table: the `after` of each page up to the one shown, its rows, columns and order
  let resultsAfter = [-1], resultsNext = null, resultRows = [], resultColumns = [], resultSort = null;

  // The state badge and the bar always change together, in one tick and from one source: a
  // finished state never shows beside a bar still on its way (a finished bar does not animate).
  function progress(c, s, queued) {
    state(s, queued);
    setBar($("#progress"), c);
    for (const k of ["succeeded", "failed", "pending", "total"]) $("#c-" + k).textContent = c[k];
  }
  function state(s, queued) {
    const label = queued ? "queued" : s;
    const badge = $("#state");
    finished = FINISHED.includes(s);
    badge.textContent = label;
    badge.className = "badge " + label;
    $("#progress").classList.toggle("final", finished);
    $("#cancel").hidden = finished;
    $("#delete").hidden = !finished;
    if (!finished) $("#retry").hidden = true;
    else runStart = null;
    if (finished && !$("#previews .tile")) $("#previews-section").hidden = true;
  }
  // What the workers run now, and how far each stage call has got where the stage says
  // (item.progress; reading a video says it frame by frame).
  function running(rows) {
    const section = $("#running-section");
    section.hidden = !rows || rows.length === 0;
    if (section.hidden) return;
    $("#running").innerHTML = rows.map((r) => {
      const more = r.count > r.items.length ? ` and ${r.count - r.items.length} more` : "";
      const items = r.items.map((i) => `<a href="/jobs/${enc(id)}/items/${enc(i)}">${esc(i)}</a>`).join(", ") + more;
      const said = r.total > 0 ? `${r.done} / ${r.total}` : r.done > 0 ? String(r.done) : "–";
      const share = r.total > 0 ? Math.min(100, (100 * r.done) / r.total) : 0;
      const meter = r.total > 0 ? `<div class="progress" title="${share.toFixed(0)}%"><span class="ok" style="width:${share}%"></span></div>` : "";
      return `<tr><td>${items}</td><td>${esc(r.stage)}</td><td class="said">${meter}<span class="count">${said}</span></td><td>${duration(r.seconds)}</td></tr>`;
    }).join("");
  }
  function render(job) {
    progress({ ...job.counts }, job.state, job.queued);
    running(job.state === "running" && job.live ? job.live.running : []);
    $("#inputs").textContent = job.inputs.length + (job.inputs.length === 1 ? " input" : " inputs") + ": " + job.inputs.join(", ");
    $("#c-took").textContent = duration(job.duration_s);
    runStart = job.state === "running" && job.started_at != null ? Date.now() - job.duration_s * 1000 : null;
    if (job.live) {
      $("#c-rate").textContent = job.live.rate.toFixed(1);
      $("#c-eta").textContent = duration(job.live.eta_s);
    }
    const err = $("#job-error");
    err.hidden = !job.error;
    err.textContent = job.error || "";
    $("#retry").hidden = !(FINISHED.includes(job.state) && job.counts.failed > 0);
  }
  async function clock() {
    if (askingStart) return; // the job runs now, and this page does not know since when: ask
    askingStart = true;
    try {
      const job = await api(base);
      if (job.state === "running" && job.started_at != null && !finished) runStart = Date.now() - job.duration_s * 1000;
    } finally { askingStart = false; }
  }
  async function failed() {
    const data = await api(`${base}/items?status=failed&size=${failedShown}`);
    $("#failed-section").hidden = data.total === 0;
    $("#failed-count").textContent = `(${data.total})`;
    $("#failed").innerHTML = data.items.map((it) => `<tr data-item="${esc(it.id)}">
      <td><a href="/jobs/${enc(id)}/items/${enc(it.id)}">${esc(it.input.split("/").pop() || it.id)}</a></td>
      <td>${esc(it.error_stage)}</td><td class="error">${esc(it.error_type)}: ${esc(it.error_message)}</td><td class="num">${it.attempts}</td></tr>`).join("");
    $("#failed-more").hidden = data.total <= data.items.length;
  }
  async function previews() {
    const data = await api(`${base}/items?status=succeeded&size=${previewsShown}&artifacts=true`);
    const tiles = [];
    for (const it of data.items) {
      for (const a of it.artifacts || []) {
        const link = `/jobs/${enc(id)}/items/${enc(it.id)}`;
        if (a.kind === "image") tiles.push(`<a class="tile" href="${link}" title="${esc(it.input)}"><img loading="lazy" src="${esc(a.url)}" alt="${esc(a.name)} of ${esc(it.id)}"><span>${esc(it.input.split("/").pop())}</span></a>`);
        else if (a.kind === "video") tiles.push(`<div class="tile"><video controls preload="metadata" src="${esc(a.url)}"></video><a href="${link}">${esc(it.input.split("/").pop())}</a></div>`);
      }
    }
    const html = tiles.join("") || `<p class="muted">none yet</p>`;
    if (html !== previewsHtml) { // the same tiles again: keep the elements (a playing video, a note on one that cannot play)
      previewsHtml = html;
      $("#previews").innerHTML = html;
      watchVideos($("#previews"));
    }
    $("#previews-section").hidden = finished && !tiles.length; // a finished job without pictures: no card
    $("#preview-count").textContent = data.total ? `(${data.items.length} of ${data.total} items)` : "";
    $("#previews-more").hidden = data.total <= data.items.length;
  }
  async function results() {
    const after = resultsAfter[resultsAfter.length - 1];
    const data = await api(`${base}/items?status=succeeded&size=${RESULTS_SIZE}&after=${after}&results=true`);
    if (!data.items.length && resultsAfter.length > 1) { resultsAfter.pop(); return results(); } // past the end
    $("#results-section").hidden = data.total === 0;
    resultsNext = data.next;
    resultRows = data.items.map((it) => ({ id: it.id, cells: flatten(it.result) }));
    const keys = [...new Set(resultRows.flatMap((r) => Object.keys(r.cells)))];
    resultColumns = [{ key: null, label: "item" }, ...keys.map((k) => ({ key: k, label: k }))];
    const first = (resultsAfter.length - 1) * RESULTS_SIZE;
    $("#results-info").textContent = data.items.length ? `rows ${first + 1}–${first + data.items.length} of ${data.total}` : "";
    $("#results-count").textContent = `(${data.total})`;
    $("#results-prev").disabled = resultsAfter.length <= 1;
    $("#results-next").disabled = data.next == null;
    drawResults();
  }
  function drawResults() {
    const value = (row, key) => (key === null ? row.id : row.cells[key]);
    const rows = resultRows.slice();
    if (resultSort) {
      const { key, dir } = resultSort;
      rows.sort((x, y) => {
        const a = value(x, key), b = value(y, key);
        if (a == null || b == null) return (a == null) - (b == null); // empty cells last either way
        return dir * compareCells(a, b);
      });
    }
    $("#results-head").innerHTML = resultColumns.map((c, i) => {
      const sorted = resultSort && resultSort.key === c.key ? ` aria-sort="${resultSort.dir > 0 ? "ascending" : "descending"}"` : "";
      return `<th data-col="${i}"${sorted} title="sort the rows of this page by ${esc(c.label)} (again: the other way). Only the page shown is sorted: sorting the whole job would read every row of it.">${esc(c.label)}</th>`;
    }).join("");
    $("#results").innerHTML = rows.map((r) => `<tr data-item="${esc(r.id)}">` + resultColumns.map((c) => {
      if (c.key === null) return `<td><a href="/jobs/${enc(id)}/items/${enc(r.id)}">${esc(r.id)}</a></td>`;
      const v = r.cells[c.key], text = cellText(v);
      const shown = text.length > 80 ? text.slice(0, 79) + "…" : text;
      return `<td${typeof v === "number" ? ' class="num"' : ""}${shown !== text ? ` title="${esc(text)}"` : ""}>${esc(shown)}</td>`;
    }).join("") + "</tr>").join("");
  }
  function charts(final, finishedItems) {
    if (!finishedItems) return; // nothing to draw yet
    $("#charts-section").hidden = false;
    for (const img of [$("#chart-runtime"), $("#chart-throughput")]) img.src = img.dataset.src + (final ? "" : "?t=" + Date.now());
  }
  function refreshLists(c) {
    if (pendingRefresh) return;
    pendingRefresh = setTimeout(async () => {
      pendingRefresh = null;
      try {
        if (c.failed !== lastFailed) { lastFailed = c.failed; await failed(); }
        if (c.succeeded !== lastSucceeded) { lastSucceeded = c.succeeded; await previews(); await results(); }
      } catch (e) { flash(e.message); }
    }, 300);
  }
  async function reload(final) {
    try {
      const job = await api(base);
      render(job);
      lastFailed = job.counts.failed;
      lastSucceeded = job.counts.succeeded;
      await Promise.all([failed(), previews(), results()]);
      charts(final, job.counts.succeeded + job.counts.failed);
      if (FINISHED.includes(job.state)) $("#c-eta").textContent = "–";
    } catch (e) { flash(e.message); }
  }
  $("#cancel").addEventListener("click", async () => {
    if (!confirm("Cancel this job? Items not finished will be cancelled.")) return;
    try { render(await api(base + "/cancel", { method: "POST" })); } catch (e) { flash(e.message); }
  });
  $("#retry").addEventListener("click", async () => {
    try {
      await api(base + "/retry", { method: "POST" });
      location.reload(); // follow the job again from the start: its state, counts and events
    } catch (e) { flash(e.message); }
  });
  $("#delete").addEventListener("click", async () => {
    if (!confirm(`Delete job ${id} for good? Its records, results and files are removed.`)) return;
    try {
      await api(base, { method: "DELETE" });
      location.href = "/";
    } catch (e) { flash(e.message); }
  });
  $("#failed-more").addEventListener("click", () => { failedShown += 50; failed(); });
  $("#previews-more").addEventListener("click", () => { previewsShown += 24; previews(); });
  $("#results-next").addEventListener("click", () => { resultsAfter.push(resultsNext); results().catch((e) => flash(e.message)); });
  $("#results-prev").addEventListener("click", () => { resultsAfter.pop(); results().catch((e) => flash(e.message)); });
  $("#results-head").addEventListener("click", (e) => {
    const th = e.target.closest("th");
    if (!th) return;
    const { key } = resultColumns[Number(th.dataset.col)];
    resultSort = { key, dir: resultSort && resultSort.key === key ? -resultSort.dir : 1 };
    drawResults();
  });
  const lightbox = $("#lightbox");
  for (const chart of [$("#chart-runtime"), $("#chart-throughput")]) {
    chart.addEventListener("click", () => {
      $("#lightbox-img").src = chart.src;
      $("#lightbox-img").alt = chart.alt;
      $("#lightbox-open").href = chart.src;
      lightbox.showModal();
    });
  }
  $("#lightbox-close").addEventListener("click", () => lightbox.close());
  $("#lightbox-img").addEventListener("click", () => lightbox.close());
  lightbox.addEventListener("click", (e) => { if (e.target === lightbox) lightbox.close(); }); // the backdrop
  setInterval(() => { if (runStart !== null && !finished) $("#c-took").textContent = duration((Date.now() - runStart) / 1000); }, 1000);

  reload(false).then(() => {
    const events = new EventSource(API + base + "/events");
    events.addEventListener("progress", (e) => {
      const c = JSON.parse(e.data);
      if (c.total === undefined) return;
      progress({ total: c.total, succeeded: c.succeeded, failed: c.failed, pending: c.pending, cancelled: c.cancelled }, c.state, c.queued);
      if (c.state === "running" && runStart === null) clock().catch(() => {}); // it began since the page loaded
      if (c.rate !== undefined) $("#c-rate").textContent = Number(c.rate).toFixed(1);
      if (c.eta_s !== undefined) $("#c-eta").textContent = duration(c.eta_s);
      running(c.state === "running" ? c.running : []);
      refreshLists(c);
    });
    // data-finished marks a page that shows the finished job whole: its lists are loaded too
    events.addEventListener("end", () => { events.close(); reload(true).then(() => { document.body.dataset.finished = "1"; }); });
  });
}

// --- item ------------------------------------------------------------------------------------
async function itemPage() {
  const { job, item } = document.body.dataset;
  try {
    const it = await api(`/jobs/${enc(job)}/items/${enc(item)}`);
    const badge = $("#status");
    badge.textContent = it.status;
    badge.className = "badge " + it.status;
    const facts = { Input: it.input, Attempts: it.attempts, Worker: it.worker || "–", Started: it.started_at ? when(it.started_at) : "–", Finished: it.finished_at ? when(it.finished_at) : "–" };
    if (it.seconds) for (const [stage, s] of Object.entries(it.seconds)) facts[`${stage} (s)`] = Number(s).toFixed(3);
    $("#facts").innerHTML = Object.entries(facts).map(([k, v]) => `<dt>${esc(k)}</dt><dd>${esc(v)}</dd>`).join("");
    if (it.error_type) {
      $("#error-section").hidden = false;
      $("#error-line").textContent = `${it.error_type} in stage ${it.error_stage || "?"}: ${it.error_message}`;
      $("#traceback").textContent = it.error_traceback || "(no traceback: the worker did not return one)";
      $("#attempts").innerHTML = it.attempts_log.map((a) => `<tr><td>${a.attempt}</td><td>${esc(a.kind)}</td><td>${esc(a.worker)}</td><td>${esc(a.stage)}</td><td>${esc(a.error_type)}: ${esc(a.message)}</td></tr>`).join("");
    }
    if (it.result) { $("#result-section").hidden = false; $("#result").textContent = JSON.stringify(it.result, null, 2); }
    if (it.artifacts.length) {
      $("#artifacts-section").hidden = false;
      $("#artifacts").innerHTML = it.artifacts.map((a) => {
        const view = a.kind === "image" ? `<img src="${esc(a.url)}" alt="${esc(a.name)}">` : a.kind === "video" ? `<video controls preload="metadata" src="${esc(a.url)}"></video>` : "";
        return `<figure class="tile">${view}<figcaption><a href="${esc(a.url)}" download="${esc(a.name.split("/").pop())}">${esc(a.name)}</a> <span class="muted">${(a.size / 1024).toFixed(1)} KiB</span></figcaption></figure>`;
      }).join("");
      watchVideos($("#artifacts"));
    }
  } catch (e) { flash(e.message); }
}

// --- login -----------------------------------------------------------------------------------
function loginPage() {
  $("#login-form").addEventListener("submit", async (e) => {
    e.preventDefault();
    try {
      await api("/session", { method: "POST", headers: { "Content-Type": "application/json" }, body: JSON.stringify({ token: $("#token").value.trim() }) });
      location.href = document.body.dataset.next || "/";
    } catch (err) {
      const box = $("#login-error");
      box.textContent = err.message;
      box.hidden = false;
    }
  });
}

document.addEventListener("DOMContentLoaded", () => {
  const logout = $("#logout");
  if (logout) logout.addEventListener("click", async () => { await api("/session", { method: "DELETE" }); location.href = "/login"; });
  const pages = { jobs: jobsPage, submit: submitPage, job: jobPage, item: itemPage, login: loginPage };
  const init = pages[document.body.dataset.page];
  if (init) init();
});
