// restic-manager console: progressive enhancement for the server-rendered
// pages. Every action goes through the JSON API with fetch() (same origin,
// session cookie), so the server's role checks and cross-origin protection
// apply to the page exactly as to any client. No inline scripts: the CSP
// forbids them; pages pass data in data- attributes.
"use strict";

const $ = (sel, root) => (root || document).querySelector(sel);
const $$ = (sel, root) => Array.from((root || document).querySelectorAll(sel));

// api calls the JSON API and throws an Error whose message a person can act on.
async function api(method, path, body) {
  const opts = { method, credentials: "same-origin", headers: {} };
  if (body !== undefined) {
    opts.headers["Content-Type"] = "application/json";
    opts.body = JSON.stringify(body);
  }
  let resp;
  try {
    resp = await fetch(path, opts);
  } catch (e) {
    throw new Error("The console did not answer (" + e.message + "). Check your connection and try again.");
  }
  let data = null;
  const text = await resp.text();
  try { data = text ? JSON.parse(text) : null; } catch (e) { data = null; }
  if (!resp.ok) {
    let msg = (data && data.error) || text || resp.statusText;
    if (resp.status === 401) msg = "Your session has ended. Log in again.";
    else if (resp.status === 403) msg = "Refused: " + msg + ". Your role does not allow this; ask an administrator.";
    const err = new Error(msg);
    err.status = resp.status;
    err.data = data;
    throw err;
  }
  return { status: resp.status, data, headers: resp.headers };
}

function showError(el, err) {
  if (!el) return;
  if (!err) { el.hidden = true; el.textContent = ""; return; }
  el.textContent = err.message || String(err);
  el.hidden = false;
}

function lines(s) { return (s || "").split("\n").map(x => x.trim()).filter(Boolean); }
function commas(s) { return (s || "").split(",").map(x => x.trim()).filter(Boolean); }
function num(v) { const n = parseInt(v, 10); return isNaN(n) ? 0 : n; }

function fmtBytes(n) {
  n = n || 0;
  if (n < 1024) return n + " B";
  const u = "KMGTPE"; let i = -1;
  do { n /= 1024; i++; } while (n >= 1024 && i < u.length - 1);
  return n.toFixed(1) + " " + u[i] + "iB";
}
// fmtTime shows a time as the server-rendered parts of the page do, in the
// browser's time zone.
// limitText says a job's bandwidth limits ("" when none), as the job page does.
function limitText(a) {
  const parts = [];
  if (a.limit_upload_kib > 0) parts.push("upload limit " + a.limit_upload_kib + " KiB/s");
  if (a.limit_download_kib > 0) parts.push("download limit " + a.limit_download_kib + " KiB/s");
  return parts.join(", ");
}

function fmtTime(s) {
  if (!s) return "";
  const d = new Date(s);
  if (isNaN(d)) return s;
  const p = n => String(n).padStart(2, "0");
  return d.getFullYear() + "-" + p(d.getMonth() + 1) + "-" + p(d.getDate()) + " " + p(d.getHours()) + ":" + p(d.getMinutes()) + ":" + p(d.getSeconds());
}
function el(tag, attrs, ...kids) {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (k === "class") e.className = v; else if (k.startsWith("data-")) e.setAttribute(k, v); else e[k] = v;
  }
  for (const k of kids) if (k != null) e.append(k);
  return e;
}

// showKind reveals the fieldset of the selected operation kind.
function wireKind(form) {
  const sel = form.elements.kind;
  const sync = () => $$("fieldset[class*=kind-]", form).forEach(f => { f.hidden = !f.classList.contains("kind-" + sel.value); });
  sel.addEventListener("change", sync);
  sync();
  return sync;
}

// Hook and source names: ticked checkboxes (the host's own, on its page)
// or a comma-separated field (a policy's, free names). Never a command:
// the agent's configuration defines what a name runs.
function pickNames(form, name) {
  const boxes = $$("input[type=checkbox][name=" + name + "]", form);
  if (boxes.length) return boxes.filter(b => b.checked).map(b => b.value);
  const t = form.elements[name];
  return t && typeof t.value === "string" ? commas(t.value) : [];
}
function setNames(form, name, list) {
  const boxes = $$("input[type=checkbox][name=" + name + "]", form);
  if (boxes.length) { boxes.forEach(b => { b.checked = (list || []).includes(b.value); }); return; }
  const t = form.elements[name];
  if (t && typeof t.value === "string") t.value = (list || []).join(", ");
}
// backupExtras adds a backup's hooks, sources and bandwidth limits to o.
function backupExtras(form, o) {
  const hooks = pickNames(form, "hooks"), sources = pickNames(form, "sources");
  if (hooks.length) o.hooks = hooks;
  if (sources.length) o.sources = sources;
  return limitsFromForm(form, "", o);
}
function backupExtrasToForm(form, s) {
  setNames(form, "hooks", s.hooks); setNames(form, "sources", s.sources);
  limitsToForm(form, "", s);
}
// limitsFromForm adds a schedule's bandwidth limits and windows to o from
// the fields named prefix + "limit_upload_kib" and so on (a form holds one
// set per kind that has them: "" for backup, "copy_" for copy).
function limitsFromForm(form, prefix, o) {
  const f = form.elements, up = f[prefix + "limit_upload_kib"], down = f[prefix + "limit_download_kib"], ws = f[prefix + "limit_windows"];
  if (up && up.value !== "") o.limit_upload_kib = num(up.value);
  if (down && down.value !== "") o.limit_download_kib = num(down.value);
  if (ws) { const list = parseWindows(ws.value); if (list.length) o.limit_windows = list; }
  return o;
}
function limitsToForm(form, prefix, s) {
  const f = form.elements, up = f[prefix + "limit_upload_kib"], down = f[prefix + "limit_download_kib"], ws = f[prefix + "limit_windows"];
  if (up) up.value = s.limit_upload_kib || "";
  if (down) down.value = s.limit_download_kib || "";
  if (ws) ws.value = formatWindows(s.limit_windows);
}

// Bandwidth windows are edited one a line: "mon-fri 08:00-18:00 5120/0"
// (days as a range, a comma list or "daily"; from-to in the schedule's time
// zone, to before from runs overnight; upload/download KiB/s, 0 none). The
// console checks them again and says what is wrong.
const weekDays = ["mon", "tue", "wed", "thu", "fri", "sat", "sun"];
function parseWindows(text) {
  return lines(text).map(line => {
    const m = /^(\S+)\s+(\d\d:\d\d)-(\d\d:\d\d)\s+(\d+)\/(\d+)$/.exec(line.trim());
    if (!m) throw new Error("Bandwidth window \"" + line + "\" is not like \"mon-fri 08:00-18:00 5120/0\" (days, from-to, upload/download KiB/s).");
    const w = { from: m[2], to: m[3] };
    if (m[1] !== "daily") {
      w.days = [];
      for (const part of m[1].split(",")) {
        const [a, b] = part.split("-"), i = weekDays.indexOf(a), j = b === undefined ? i : weekDays.indexOf(b);
        if (i < 0 || j < 0 || j < i) throw new Error("Bandwidth window \"" + line + "\": days are mon…sun, a range such as mon-fri, a list such as sat,sun, or daily.");
        w.days.push(...weekDays.slice(i, j + 1));
      }
    }
    if (num(m[4])) w.limit_upload_kib = num(m[4]);
    if (num(m[5])) w.limit_download_kib = num(m[5]);
    return w;
  });
}
function formatWindows(ws) {
  return (ws || []).map(w => {
    const d = w.days && w.days.length ? w.days : null;
    let days = "daily";
    if (d) {
      const idx = d.map(x => weekDays.indexOf(x));
      const run = idx.every((v, k) => k === 0 || v === idx[k - 1] + 1);
      days = run && d.length > 1 ? d[0] + "-" + d[d.length - 1] : d.join(",");
    }
    return days + " " + w.from + "-" + w.to + " " + (w.limit_upload_kib || 0) + "/" + (w.limit_download_kib || 0);
  }).join("\n");
}
const sourceOf = tags => { const t = (tags || []).find(x => x.startsWith("source:")); return t ? t.slice(7) : ""; };

// drillSample adds a drill's sample budget (files, MiB) from a form to o;
// empty fields keep the defaults.
function drillSample(form, o) {
  const f = form.elements;
  if (f.sample_files.value !== "") o.sample_files = num(f.sample_files.value);
  if (f.sample_mib.value !== "") o.sample_bytes = num(f.sample_mib.value) * 1048576;
  return o;
}

function retention(f) {
  const r = {};
  for (const k of ["keep_last", "keep_hourly", "keep_daily", "keep_weekly", "keep_monthly", "keep_yearly"]) {
    if (f.elements[k] && f.elements[k].value !== "") r[k] = num(f.elements[k].value);
  }
  if (f.elements.keep_within && f.elements.keep_within.value.trim()) r.keep_within = f.elements.keep_within.value.trim();
  return r;
}

// ---- host page: run now, schedule editor
function hostPage(main) {
  const hostID = main.dataset.hostId;
  const run = $("#run-form");
  if (run) {
    wireKind(run);
    // A copy's destination is another repository than its source.
    const copyTo = run.elements.to_repo_id;
    const syncCopy = () => {
      for (const o of copyTo.options) if (o.value) o.hidden = o.value === run.elements.repo_id.value;
      if (copyTo.selectedOptions[0] && copyTo.selectedOptions[0].hidden) {
        const other = [...copyTo.options].find(o => o.value && !o.hidden);
        copyTo.value = other ? other.value : "";
      }
    };
    run.elements.repo_id.addEventListener("change", syncCopy);
    syncCopy();
    run.addEventListener("submit", async ev => {
      ev.preventDefault();
      const f = run.elements, kind = f.kind.value;
      let args = {};
      switch (kind) {
        case "backup": args = backupExtras(run, { paths: lines(f.paths.value), excludes: lines(f.excludes.value), tags: commas(f.tags.value) }); break;
        case "forget": args = { retention: retention(run), prune: f.prune.checked }; break;
        case "prune": if (f.max_unused.value) args.max_unused = f.max_unused.value; break;
        case "check": if (f.read_data_subset.value) args.read_data_subset = f.read_data_subset.value; break;
        case "unlock": args.remove_all = f.remove_all.checked; break;
        case "stats": args.mode = f.mode.value; break;
        case "copy":
          args.to_repo_id = f.to_repo_id.value;
          if (f.copy_limit_upload_kib.value !== "") args.limit_upload_kib = num(f.copy_limit_upload_kib.value);
          break;
      }
      if (kind === "copy" && !args.to_repo_id) { showError($("#run-error"), new Error("Choose a destination repository other than the source.")); return; }
      if (kind === "backup" && args.paths.length === 0 && !args.sources) { showError($("#run-error"), new Error("Give at least one path to back up, or tick a source.")); return; }
      showError($("#run-error"));
      $("#run-submit").disabled = true;
      try {
        const r = await api("POST", "/api/v1/hosts/" + encodeURIComponent(hostID) + "/jobs", { kind, repo_id: f.repo_id.value, args });
        location.href = "/jobs/" + encodeURIComponent(r.data.job_id);
      } catch (e) { showError($("#run-error"), e); $("#run-submit").disabled = false; }
    });
  }

  // Run a drill now: the sample's budget, where it runs (this host or a
  // drill host bound to the repository) and a probe among the hooks of the
  // host that runs it.
  const drill = $("#drill-form");
  if (drill) {
    const f = drill.elements;
    const sync = () => {
      for (const o of f.target_host_id.options) if (o.value) o.hidden = !(o.dataset.repos || "").split(" ").includes(f.repo_id.value);
      if (f.target_host_id.selectedOptions[0].hidden) f.target_host_id.value = "";
      const hooks = (f.target_host_id.selectedOptions[0].dataset.hooks || "").split(" ").filter(Boolean);
      const was = f.probe.value;
      f.probe.replaceChildren(el("option", { value: "" }, "none"), ...hooks.map(h => el("option", { value: h }, h)));
      if (hooks.includes(was)) f.probe.value = was;
    };
    f.repo_id.addEventListener("change", sync);
    f.target_host_id.addEventListener("change", sync);
    sync();
    drill.addEventListener("submit", async ev => {
      ev.preventDefault();
      const args = drillSample(drill, { paths: lines(f.paths.value) });
      if (f.snapshot_id.value.trim()) args.snapshot_id = f.snapshot_id.value.trim();
      if (f.target_host_id.value) args.target_host_id = f.target_host_id.value;
      if (f.probe.value) args.probe = f.probe.value;
      showError($("#drill-error"));
      $("#drill-submit").disabled = true;
      try {
        const r = await api("POST", "/api/v1/hosts/" + encodeURIComponent(hostID) + "/jobs", { kind: "drill", repo_id: f.repo_id.value, args });
        location.href = "/jobs/" + encodeURIComponent(r.data.job_id);
      } catch (e) { showError($("#drill-error"), e); $("#drill-submit").disabled = false; }
    });
  }

  // Labels: key=value lines (or commas) sent as the host's whole set; the
  // console checks the rules and says what is wrong.
  const lf = $("#labels-form");
  if (lf) lf.addEventListener("submit", async ev => {
    ev.preventDefault();
    const labels = Object.create(null);
    for (const item of lf.elements.labels.value.split(/[\n,]/).map(x => x.trim()).filter(Boolean)) {
      const i = item.indexOf("=");
      if (i < 0) { showError($("#labels-error"), new Error("Write each label as key=value: \"" + item + "\" has no '='.")); return; }
      const k = item.slice(0, i).trim();
      if (k in labels) { showError($("#labels-error"), new Error("The key \"" + k + "\" is given twice.")); return; }
      labels[k] = item.slice(i + 1).trim();
    }
    showError($("#labels-error"));
    $("#labels-save").disabled = true;
    try {
      await api("PATCH", "/api/v1/hosts/" + encodeURIComponent(hostID), { labels });
      location.reload();
    } catch (e) { showError($("#labels-error"), e); $("#labels-save").disabled = false; $("#labels-editor-box").open = true; }
  });

  const ed = $("#schedule-editor");
  if (!ed) return;
  let set = [];
  try { set = JSON.parse(main.dataset.schedules || "[]") || []; } catch (e) { set = []; }
  const syncKind = wireKind(ed);
  const f = ed.elements;
  const preview = $("#cron-preview");
  let timer;
  const updatePreview = () => {
    clearTimeout(timer);
    timer = setTimeout(async () => {
      if (!f.cron.value.trim()) { preview.textContent = ""; return; }
      try {
        const r = await api("GET", "/ui/cron?cron=" + encodeURIComponent(f.cron.value) + "&timezone=" + encodeURIComponent(f.timezone.value));
        preview.replaceChildren(el("strong", {}, r.data.description), el("div", { class: "sub" }, "next: " + r.data.next_runs.map(fmtTime).join(" · ") + " (before the host's jitter)"));
      } catch (e) { preview.replaceChildren(el("span", { class: "error" }, e.message)); }
    }, 250);
  };
  f.cron.addEventListener("input", updatePreview);
  f.timezone.addEventListener("input", updatePreview);

  const put = async (next) => {
    showError($("#schedule-error"));
    try {
      await api("PUT", "/api/v1/hosts/" + encodeURIComponent(hostID) + "/schedules", next);
      location.reload();
    } catch (e) { showError($("#schedule-error"), e); $("#schedule-editor-box").open = true; }
  };
  $$(".edit-schedule").forEach(b => b.addEventListener("click", () => {
    const s = set.find(x => x.id === b.dataset.id); if (!s) return;
    ed.reset();
    f.id.value = s.id; f.name.value = s.name; f.kind.value = s.kind; f.cron.value = s.cron; f.timezone.value = s.timezone || "";
    f.repo_id.value = s.repo_id; f.enabled.checked = !!s.enabled;
    f.paths.value = (s.paths || []).join("\n"); f.excludes.value = (s.excludes || []).join("\n"); f.tags.value = (s.tags || []).join(", ");
    const r = s.retention || {};
    for (const k of ["keep_last", "keep_hourly", "keep_daily", "keep_weekly", "keep_monthly", "keep_yearly", "keep_within"]) f[k].value = r[k] || "";
    f.prune.checked = !!s.prune; f.max_unused.value = s.max_unused || ""; f.read_data_subset.value = s.read_data_subset || "";
    f.sample_files.value = s.sample_files || ""; f.sample_mib.value = s.sample_bytes ? Math.round(s.sample_bytes / 1048576) : ""; f.probe.value = s.probe || "";
    if (f.to_repo_id) f.to_repo_id.value = s.to_repo_id || "";
    backupExtrasToForm(ed, s);
    if (s.kind === "copy") limitsToForm(ed, "copy_", s);
    syncKind(); updatePreview();
    $("#schedule-editor-box").open = true; f.name.focus();
  }));
  $$(".delete-schedule").forEach(b => b.addEventListener("click", () => {
    const s = set.find(x => x.id === b.dataset.id);
    if (s && confirm("Delete schedule " + s.name + "?")) put(set.filter(x => x.id !== s.id));
  }));
  const fp = ed.querySelector(".forget-preview-run");
  if (fp) fp.addEventListener("click", () => runForgetPreview(fp, ed.querySelector(".forget-preview"), f.repo_id.value, { host_id: hostID, retention: retention(ed) }));
  ed.addEventListener("reset", () => setTimeout(() => { syncKind(); preview.textContent = ""; if (fp) ed.querySelector(".forget-preview").textContent = ""; }));
  ed.addEventListener("submit", ev => {
    ev.preventDefault();
    const s = { name: f.name.value.trim(), kind: f.kind.value, cron: f.cron.value.trim(), timezone: f.timezone.value.trim(), enabled: f.enabled.checked, repo_id: f.repo_id.value };
    if (f.id.value) s.id = f.id.value;
    const old = set.find(x => x.id === s.id);
    if (old && old.jitter_s !== undefined) s.jitter_s = old.jitter_s;
    switch (s.kind) {
      case "backup":
        s.paths = lines(f.paths.value); s.excludes = lines(f.excludes.value); s.tags = commas(f.tags.value);
        try { backupExtras(ed, s); } catch (e) { showError($("#schedule-error"), e); return; }
        break;
      case "forget": s.retention = retention(ed); s.prune = f.prune.checked; break;
      case "prune": if (f.max_unused.value) s.max_unused = f.max_unused.value; break;
      case "check": if (f.read_data_subset.value) s.read_data_subset = f.read_data_subset.value; break;
      case "drill": drillSample(ed, s); if (f.probe.value) s.probe = f.probe.value; break;
      case "copy":
        s.to_repo_id = f.to_repo_id.value;
        try { limitsFromForm(ed, "copy_", s); } catch (e) { showError($("#schedule-error"), e); return; }
        break;
    }
    const next = set.filter(x => x.id !== s.id || !s.id);
    if (s.id) next.splice(set.findIndex(x => x.id === s.id), 0, s); else next.push(s);
    put(next);
  });
}

// ---- job page: live progress over SSE
const terminal = new Set(["succeeded", "partial", "failed", "cancelled", "expired"]);

function jobPage(main) {
  const id = main.dataset.jobId;
  const cancel = $("#cancel-job");
  if (cancel) cancel.addEventListener("click", async () => {
    cancel.disabled = true;
    try { const r = await api("POST", "/api/v1/jobs/" + encodeURIComponent(id) + "/cancel"); renderJob(r.data); }
    catch (e) { showError($("#action-error"), e); cancel.disabled = false; }
  });
  const approve = $("#approve-job");
  if (approve) approve.addEventListener("click", async () => {
    if (!confirm("Run this forget without its guard? It deletes the snapshots its preview lists for removal.")) return;
    approve.disabled = true;
    try { await api("POST", "/api/v1/jobs/" + encodeURIComponent(id) + "/approve"); location.reload(); }
    catch (e) { showError($("#action-error"), e); approve.disabled = false; }
  });
  if (main.dataset.kind === "diff" && terminal.has(main.dataset.status)) loadChanges(id);
  if (terminal.has(main.dataset.status)) return;
  connect(id);
}

function connect(id) {
  const es = new EventSource("/api/v1/jobs/" + encodeURIComponent(id) + "/events");
  const on = ev => { try { renderJob(JSON.parse(ev.data)); } catch (e) { /* a malformed event is skipped */ } };
  es.addEventListener("progress", on);
  es.addEventListener("result", ev => { on(ev); es.close(); });
  es.onerror = () => {
    // The stream ends after the result; otherwise EventSource reconnects
    // by itself. Say so while it does.
    const m = $("#job");
    if (m && !terminal.has(m.dataset.status)) $("#job-status").title = "reconnecting to live updates…";
  };
}

function renderJob(j) {
  const main = $("#job");
  const ended = terminal.has(j.status);
  // The stream may deliver an update older than one already shown (the
  // first event is read from the store after subscribing, so a queued
  // update can be older): never step backwards.
  if (terminal.has(main.dataset.status) && !ended) return;
  const seq = j.progress ? j.progress.seq || 0 : 0;
  if (!ended && seq < num(main.dataset.seq)) return;
  main.dataset.seq = String(seq);
  main.dataset.status = j.status;
  main.dataset.updates = String(num(main.dataset.updates) + 1);
  const st = $("#job-status");
  st.textContent = j.status; st.className = "badge st-" + j.status; st.title = "";
  const p = j.progress;
  if (p) {
    $("#progress").hidden = false;
    const pct = ended && j.status === "succeeded" ? 100 : (p.percent || 0);
    $("#progress-bar").style.width = pct.toFixed(1) + "%";
    $("#progress-percent").textContent = pct.toFixed(1) + " %";
    $("#progress-bytes").textContent = fmtBytes(p.bytes_done) + " of " + fmtBytes(p.bytes_total);
    $("#progress-files").textContent = (p.files_done || 0) + " of " + (p.files_total || 0) + " files";
    // Operations that report no sizes (diff, check …) show only the percentage.
    $("#progress-sizes").hidden = !p.bytes_total && !p.files_total;
    $("#progress-eta").textContent = p.eta_s && !ended ? Math.round(p.eta_s) + " s" : "—";
    $("#current-files").replaceChildren(...(p.current_files || []).map(f => el("li", {}, f)));
  } else if (j.status === "running") {
    $("#progress").hidden = false;
  }
  if (j.started_at) $("#job-started").textContent = fmtTime(j.started_at);
  if (ended) {
    const c = $("#cancel-job"); if (c) c.hidden = true;
    if (j.ended_at) $("#job-ended").textContent = fmtTime(j.ended_at);
    if (j.started_at && j.ended_at) $("#duration").textContent = ((new Date(j.ended_at) - new Date(j.started_at)) / 1000).toFixed(1) + "s";
    if (j.summary && main.dataset.kind === "backup") {
      const s = j.summary;
      $("#data-added").textContent = fmtBytes(s.data_added);
      if (s.total_files_processed !== undefined) $("#files-summary").textContent = s.total_files_processed + " processed, " + (s.files_new || 0) + " new, " + (s.files_changed || 0) + " changed (" + fmtBytes(s.total_bytes_processed) + ")";
      $("#summary-raw").textContent = JSON.stringify(s, null, 2);
      $("#row-summary").hidden = false;
    }
    if (main.dataset.kind === "diff") loadChanges(j.id);
    // A drill's report (sample, verdicts, probe) is drawn by the server.
    if (main.dataset.kind === "drill" && !$("#drill-report[data-done]")) { location.reload(); return; }
    if (main.dataset.kind === "copy" && !$("#copy-report[data-done]")) { location.reload(); return; }
    // What a restore, check, forget or key rotation did is drawn by the
    // server: take its facts from the page as it is now, in place.
    if (["restore", "check", "forget", "rotate_key"].includes(main.dataset.kind) && j.output && !main.dataset.factsLoaded) {
      main.dataset.factsLoaded = "1";
      fetch(location.href, { credentials: "same-origin" }).then(r => r.text()).then(html => {
        const facts = new DOMParser().parseFromString(html, "text/html").querySelector("#job dl.facts");
        if (facts) { $("#job dl.facts").replaceWith(facts); localTimes(facts); }
      }).catch(() => {});
    }
  }
  if (j.snapshot_id) { $("#snapshot-id").textContent = j.snapshot_id; $("#row-snapshot").hidden = false; }
  $("#job-error").textContent = j.error || "";
  $("#row-error").hidden = !j.error;
  if (j.stderr_tail) $("#log-tail").textContent = j.stderr_tail;
  renderHooks(j);
}

// renderHooks draws a job's hook runs (a failed one marked: a failed
// before-hook skipped restic) and a backup's per-source snapshots. Text
// goes in as text: an output tail is whatever the command printed.
function renderHooks(j) {
  if (j.hooks && j.hooks.length) {
    $("#hook-runs tbody").replaceChildren(...j.hooks.map(h => {
      const ok = h.exit_code === 0 && !h.error;
      return el("tr", { class: ok ? "hook-ok" : "hook-failed", "data-hook": h.name, "data-phase": h.phase },
        el("td", {}, el("code", {}, h.name), ok ? null : " ", ok ? null : el("span", { class: "badge st-failed" }, "failed")),
        el("td", {}, h.phase), el("td", {}, String(h.exit_code)), el("td", {}, (h.duration_ms || 0) + " ms"),
        el("td", {}, h.error ? el("div", { class: "error" }, h.error) : null, el("pre", { class: "hook-output" }, h.output_tail || "")));
    }));
    $("#hooks").hidden = false;
  }
  if (j.source_snapshots && j.source_snapshots.length) {
    $("#source-snapshot-list tbody").replaceChildren(...j.source_snapshots.map(x => el("tr", { "data-source": x.source || "" },
      el("td", {}, x.source ? el("code", {}, x.source) : "the paths"), el("td", {}, el("span", { class: "badge st-" + x.status }, x.status)),
      el("td", {}, el("code", {}, (x.snapshot_id || "").slice(0, 8))), el("td", {}, x.bytes ? fmtBytes(x.bytes) : ""), el("td", { class: "error" }, x.error || ""))));
    $("#source-snapshots").hidden = false;
  }
}

async function loadChanges(id) {
  try {
    const r = await api("GET", "/api/v1/jobs/" + encodeURIComponent(id) + "/changes?limit=200");
    const d = r.data;
    $("#changes").hidden = false;
    $("#changes-stats").textContent = d.total_changes + " changed paths" + (d.total_changes > d.changes.length ? ", the first " + d.changes.length + " shown" : "") + (d.truncated ? " (the agent truncated the list)" : "");
    $("#changes-list").replaceChildren(...d.changes.map(c => el("li", {}, (c.modifier || "") + " " + (c.path || JSON.stringify(c)))));
  } catch (e) { showError($("#action-error"), e); }
}

// ---- forget preview (schedule editor, policy editor, repository page)
// runForgetPreview asks the console for a dry-run forget and shows what
// it would keep and remove, per group (host and paths).
async function runForgetPreview(btn, box, repoID, body) {
  box.replaceChildren(el("span", { class: "sub" }, "asking restic…"));
  btn.disabled = true;
  try {
    const r = (await api("POST", "/api/v1/repos/" + encodeURIComponent(repoID) + "/forget-preview", body)).data;
    const job = el("a", { href: "/jobs/" + encodeURIComponent(r.job_id) }, "job");
    if (!r.ok) {
      box.replaceChildren(el("p", { class: "error" }, (r.status === "queued" || r.status === "running") ? "Still " + r.status + " on " + r.host_id + ": follow the " : "The preview failed: " + (r.error || r.status) + " — ", job));
      return;
    }
    const short = id => id.slice(0, 8);
    const kids = [el("p", { class: "sub" }, "As run on " + r.host_id + " now (", job, "):")];
    let removes = 0;
    for (const g of r.groups) {
      const times = g.times || {};
      const why = {};
      for (const x of g.reasons || []) why[x.id] = (x.matches || []).join(", ");
      removes += (g.remove || []).length;
      const rm = el("ul", { class: "forget-remove" }, ...(g.remove || []).map(id => el("li", {}, el("code", {}, short(id)), " " + fmtTime(times[id] || ""))));
      const keep = el("ul", { class: "forget-keep" }, ...(g.keep || []).map(id => el("li", {}, el("code", {}, short(id)), " " + fmtTime(times[id] || ""), why[id] ? el("span", { class: "sub" }, " — " + why[id]) : null)));
      kids.push(el("div", { class: "forget-group" },
        el("strong", {}, (g.host || "any host") + " " + (g.paths || []).join(", ")),
        el("div", {}, el("span", { class: "badge st-failed" }, "removes " + (g.remove || []).length), " ", el("span", { class: "badge st-succeeded" }, "keeps " + (g.keep || []).length)),
        (g.remove || []).length ? rm : null, el("details", {}, el("summary", {}, "kept snapshots and why"), keep)));
    }
    if (r.groups.length === 0) kids.push(el("p", {}, "No snapshots in scope: nothing would be removed."));
    else if (removes === 0) kids.push(el("p", {}, "Nothing would be removed."));
    box.replaceChildren(...kids);
  } catch (e) { box.replaceChildren(el("p", { class: "error" }, e.message)); }
  finally { btn.disabled = false; }
}

// ---- repository page: diff two snapshots
function repoPage(main) {
  const access = $("#access-form");
  if (access) access.addEventListener("submit", async ev => {
    ev.preventDefault();
    const hosts = $("#access-list").value.split(/\s+/).filter(Boolean);
    try {
      await api("PATCH", "/api/v1/repos/" + encodeURIComponent(main.dataset.repoId), { hosts });
      location.reload();
    } catch (e) { showError($("#access-error"), e); }
  });
  const repoPath = "/api/v1/repos/" + encodeURIComponent(main.dataset.repoId);
  const test = $("#test-connection");
  if (test) test.addEventListener("click", async () => {
    const out = $("#test-result");
    showError($("#test-error"));
    test.disabled = true;
    out.textContent = "testing…";
    try {
      const r = (await api("POST", repoPath + "/test", {})).data;
      const link = document.createElement("a");
      link.href = "/jobs/" + encodeURIComponent(r.job_id);
      link.textContent = "job";
      if (r.ok) out.textContent = "✔ connected from " + r.host_id + ": " + r.snapshots + " snapshots (";
      else if (r.status === "queued" || r.status === "running") out.textContent = "still " + r.status + " on " + r.host_id + " (";
      else out.textContent = "✘ " + (r.error || r.status) + " (";
      out.append(link, ")");
      out.className = r.ok ? "ok" : "error";
    } catch (e) { out.textContent = ""; showError($("#test-error"), e); }
    test.disabled = false;
  });
  const rotate = $("#rotate-form");
  if (rotate) rotate.addEventListener("submit", async ev => {
    ev.preventDefault();
    const pw = $("#rotate-password").value;
    if (pw !== $("#rotate-repeat").value) { showError($("#rotate-error"), new Error("The two passwords differ.")); return; }
    try {
      const r = await api("POST", repoPath + "/rotate-password", { password: pw });
      location.href = "/jobs/" + encodeURIComponent(r.data.job_id);
    } catch (e) { showError($("#rotate-error"), e); }
  });
  const edit = $("#repo-edit");
  if (edit) edit.addEventListener("submit", async ev => {
    ev.preventDefault();
    const body = { name: $("#edit-name").value };
    const url = $("#edit-url").value.trim();
    if (url) body.url = url;
    try {
      await api("PATCH", repoPath, body);
      location.reload();
    } catch (e) { showError($("#edit-error"), e); }
  });
  const del = $("#repo-delete");
  if (del) del.addEventListener("click", async () => {
    if (!confirm("Delete this repository from the console? Its data stays where it is.")) return;
    try {
      await api("DELETE", repoPath);
      location.href = "/repos";
    } catch (e) { showError($("#edit-error"), e); }
  });
  $$("#forget-schedules .forget-preview-run").forEach(b => b.addEventListener("click", () => {
    const box = b.closest("tr").nextElementSibling.querySelector(".forget-preview");
    runForgetPreview(b, box, main.dataset.repoId, Object.assign({ host_id: b.dataset.host }, JSON.parse(b.dataset.schedule)));
  }));
  const unlock = $("#unlock-run");
  if (unlock) unlock.addEventListener("click", async () => {
    if (!main.dataset.hostId) { showError($("#unlock-error"), new Error("No host has used this repository yet, so none can run unlock.")); return; }
    try {
      const r = await api("POST", "/api/v1/hosts/" + encodeURIComponent(main.dataset.hostId) + "/jobs", { kind: "unlock", repo_id: main.dataset.repoId });
      location.href = "/jobs/" + encodeURIComponent(r.data.job_id);
    } catch (e) { showError($("#unlock-error"), e); }
  });
  const btn = $("#diff-run");
  if (!btn) return;
  const picks = $$(".diff-pick");
  const sync = () => { btn.disabled = picks.filter(p => p.checked).length !== 2; };
  picks.forEach(p => p.addEventListener("change", sync));
  btn.addEventListener("click", async () => {
    const [b, a] = picks.filter(p => p.checked).map(p => p.value); // the list is newest first
    if (!main.dataset.hostId) { showError($("#diff-error"), new Error("No host has used this repository yet, so none can run the diff.")); return; }
    try {
      const r = await api("POST", "/api/v1/hosts/" + encodeURIComponent(main.dataset.hostId) + "/jobs", { kind: "diff", repo_id: main.dataset.repoId, args: { snapshot_a: a, snapshot_b: b } });
      location.href = "/jobs/" + encodeURIComponent(r.data.job_id);
    } catch (e) { showError($("#diff-error"), e); }
  });
}

// ---- downloads from a snapshot
// downloadControl offers path of a snapshot for download: a file as is (its
// size is in its row and the link's label), a folder as .tar.gz after the
// console said what it holds (files and bytes, from the snapshot's index)
// and which host would stream it. The link is a plain navigation: the
// browser saves the stream to disk, nothing is held in the page.
function downloadControl(snapPath, path, type, size, name, here) {
  const href = snapPath + "/download?path=" + encodeURIComponent(path);
  if (type === "file") {
    const a = el("a", { href, download: name, class: "dl", "data-path": path }, "Download");
    a.setAttribute("aria-label", "Download " + name + " (" + fmtBytes(size) + ")");
    a.title = name + ", " + fmtBytes(size);
    return a;
  }
  if (type !== "dir") return "";
  const box = el("span", { class: "dl-dir", "data-path": path });
  const b = el("button", { type: "button", class: "small plain dl-size" }, here ? "Download " + name + " as .tar.gz…" : "As .tar.gz…");
  b.setAttribute("aria-label", "Download " + name + " as .tar.gz: show its size first");
  b.addEventListener("click", async () => {
    b.disabled = true;
    try {
      const i = (await api("GET", snapPath + "/size?path=" + encodeURIComponent(path))).data;
      const what = fmtBytes(i.size) + " in " + i.files + (i.files === 1 ? " file" : " files") + " before compression";
      if (i.unavailable) { box.replaceChildren(el("span", { class: "error", role: "alert" }, what + ": " + i.unavailable)); return; }
      const a = el("a", { href, download: i.filename, class: "dl", "data-path": path }, "Download " + i.filename);
      a.title = what;
      box.replaceChildren(a, el("span", { class: "sub" }, " " + what));
      a.focus();
    } catch (e) { box.replaceChildren(el("span", { class: "error", role: "alert" }, e.message)); }
  });
  box.append(b);
  return box;
}

// ---- restore wizard
function restorePage(main) {
  const st = { repo: "", snap: null, snaps: [], dir: "/", sel: new Map(), cursor: "", poll: null };
  const err = e => showError($("#wizard-error"), e);
  const step = n => {
    for (let i = 1; i <= 4; i++) $("#step-" + i).hidden = i !== n;
    $$("#steps li").forEach(li => li.classList.toggle("cur", li.dataset.step === String(n)));
    err();
  };
  const repoSel = $("#w-repo");

  async function loadSnapshots() {
    st.repo = repoSel.value;
    const box = $("#w-snapshots");
    box.replaceChildren();
    if (!st.repo) return;
    try {
      const r = await api("GET", "/api/v1/repos/" + encodeURIComponent(st.repo) + "/snapshots");
      st.snaps = (r.data || []).slice().reverse();
      if (st.snaps.length === 0) { box.append(el("p", {}, "No snapshots known for this repository yet. Run a backup (or a snapshots job) first.")); return; }
      const tb = el("tbody");
      for (const s of st.snaps) {
        const b = el("button", { type: "button", class: "small pick-snapshot", "data-id": s.id }, "Browse");
        b.addEventListener("click", () => pickSnapshot(s));
        const src = sourceOf(s.tags);
        tb.append(el("tr", { "data-snapshot": s.id }, el("td", {}, el("code", {}, s.short_id || s.id.slice(0, 8)), src ? " " : null, src ? el("span", { class: "badge source-marker" }, "source " + src) : null), el("td", {}, fmtTime(s.time)), el("td", {}, s.hostname || ""), el("td", { class: "sub" }, (s.paths || []).join(", ")), el("td", {}, b)));
      }
      box.append(el("div", { class: "table-wrap" }, el("table", { id: "w-snapshot-list" }, el("thead", {}, el("tr", {}, ...["ID", "Time", "Host", "Paths", ""].map(h => el("th", {}, h || el("span", { class: "vh" }, "Actions"))))), tb)));
      if (main.dataset.snapshot) {
        const s = st.snaps.find(x => x.id === main.dataset.snapshot || x.id.startsWith(main.dataset.snapshot));
        main.dataset.snapshot = "";
        if (s) pickSnapshot(s);
      }
    } catch (e) { err(e); }
  }
  repoSel.addEventListener("change", loadSnapshots);

  function pickSnapshot(s) {
    st.snap = s; st.sel.clear(); renderSel();
    $("#w-snap-label").textContent = (s.short_id || s.id.slice(0, 8)) + " · " + fmtTime(s.time) + " · " + (s.hostname || "");
    step(2);
    openDir("/");
  }

  async function openDir(dir, more) {
    clearTimeout(st.poll);
    if (!more) { st.dir = dir; st.cursor = ""; }
    renderCrumbs();
    const tb = $("#w-tree tbody");
    if (!more) tb.replaceChildren();
    let r;
    const snapPath = "/api/v1/repos/" + encodeURIComponent(st.repo) + "/snapshots/" + encodeURIComponent(st.snap.id);
    try {
      r = await api("GET", snapPath + "/ls?limit=500&path=" + encodeURIComponent(dir) + (more && st.cursor ? "&cursor=" + encodeURIComponent(st.cursor) : ""));
    } catch (e) {
      if (e.status !== 409) { err(e); return; }
      // Not indexed yet: start the index on a host bound to the repository
      // (an operator's action; reading starts nothing) and ask again shortly.
      $("#w-indexing").hidden = false;
      if (!e.data || !e.data.job_id || terminal.has(e.data.status)) {
        try { await api("POST", snapPath + "/index"); } catch (e2) { err(e2); return; }
      }
      st.poll = setTimeout(() => { if (st.dir === dir) openDir(dir); }, 1000);
      return;
    }
    $("#w-indexing").hidden = true;
    if (st.dir !== dir) return;
    st.cursor = r.headers.get("X-Next-Cursor") || "";
    $("#w-more").hidden = !st.cursor;
    const entries = r.data || [];
    if (!more) $("#w-dl-here").replaceChildren(downloadControl(snapPath, dir, "dir", 0, dir === "/" ? "the whole snapshot" : "this folder", true));
    if (!more && entries.length === 0) tb.append(el("tr", {}, el("td", { colSpan: 5 }, "This folder is empty.")));
    for (const e of entries) {
      const cb = el("input", { type: "checkbox", class: "pick", value: e.path, checked: st.sel.has(e.path) });
      cb.setAttribute("aria-label", "select " + e.path);
      cb.addEventListener("change", () => { if (cb.checked) st.sel.set(e.path, e.type); else st.sel.delete(e.path); renderSel(); });
      let name;
      if (e.type === "dir") {
        name = el("button", { type: "button", class: "tree-dir", "data-path": e.path }, e.name + "/");
        name.addEventListener("click", () => openDir(e.path));
      } else name = el("span", { class: "tree-file" }, e.name);
      tb.append(el("tr", { "data-path": e.path, "data-type": e.type }, el("td", {}, cb), el("td", {}, name), el("td", {}, e.type === "dir" ? "" : fmtBytes(e.size)), el("td", { class: "sub" }, fmtTime(e.mtime)), el("td", {}, downloadControl(snapPath, e.path, e.type, e.size, e.name))));
    }
  }
  $("#w-more").addEventListener("click", () => openDir(st.dir, true));

  function renderCrumbs() {
    const c = $("#w-crumbs");
    const parts = st.dir.split("/").filter(Boolean);
    const links = [el("a", { href: "#", "data-path": "/" }, "/")];
    let acc = "";
    for (const p of parts) { acc += "/" + p; links.push(el("a", { href: "#", "data-path": acc }, p + "/")); }
    links.forEach(a => a.addEventListener("click", ev => { ev.preventDefault(); openDir(a.dataset.path); }));
    c.replaceChildren(...links);
  }

  function renderSel() {
    const ul = $("#w-selection");
    ul.replaceChildren(...[...st.sel.keys()].sort().map(p => {
      const x = el("button", { type: "button", class: "small plain" }, "remove");
      x.addEventListener("click", () => { st.sel.delete(p); renderSel(); const cb = $$("#w-tree input.pick").find(c => c.value === p); if (cb) cb.checked = false; });
      return el("li", { "data-path": p }, p + (st.sel.get(p) === "dir" ? "/ " : " "), x);
    }));
    $("#w-sel-count").textContent = String(st.sel.size);
    // A source snapshot may go whole into the agent's restore command.
    $("#w-to-3").disabled = st.sel.size === 0 && !sourceOf(st.snap && st.snap.tags);
  }

  // The original host: the enrolled host whose hostname took the snapshot.
  const origHost = () => $$("#w-host option").find(o => st.snap && o.dataset.hostname === st.snap.hostname);
  const target = () => $$("input[name=w-target]").find(r => r.checked).value;
  function syncTarget() {
    const src = sourceOf(st.snap && st.snap.tags);
    $("#w-tosource-box").hidden = !src;
    $("#w-source-name").textContent = src;
    if (!src && target() === "tosource") $$("input[name=w-target]").find(r => r.value === "samehost").checked = true;
    const t = target();
    $("#w-inplace-box").hidden = t !== "inplace";
    $("#w-host-box").hidden = t !== "otherhost" && t !== "tosource";
    $("#w-path-box").hidden = t === "inplace" || t === "tosource";
    const o = origHost();
    $("#w-orig-host").textContent = o ? "Original host: " + o.textContent : "The host that made this snapshot is not enrolled here: restore to another host.";
  }
  $$("input[name=w-target]").forEach(r => r.addEventListener("change", syncTarget));

  // limits reads the wizard's bandwidth limits (KiB/s, 0 none; the console checks the bound).
  function limits() {
    const n = (id) => { const v = Number($(id).value || 0); if (!Number.isInteger(v) || v < 0) throw new Error("Bandwidth limits are whole KiB/s, 0 for none."); return v; };
    return { limit_upload_kib: n("#w-limit-up"), limit_download_kib: n("#w-limit-down") };
  }

  function request() {
    const t = target(), o = origHost();
    const req = { repo_id: st.repo, snapshot_id: st.snap.id, include: [...st.sel.keys()].sort(), ...limits() };
    if (t === "tosource") {
      const src = sourceOf(st.snap.tags), h = $("#w-host").selectedOptions[0];
      if (!h || !(h.dataset.restoreSources || "").split(",").includes(src)) throw new Error("The chosen host's agent has no restore command for source " + src + ": choose a host that defines one, or restore the file to a folder.");
      return { repo_id: st.repo, snapshot_id: st.snap.id, target_host_id: h.value, to_source: src, ...limits() };
    }
    if (t === "otherhost") req.target_host_id = $("#w-host").value;
    else if (o) req.target_host_id = o.value;
    else throw new Error("The host that made this snapshot is not enrolled here; choose \"Another host\".");
    if (t === "inplace") {
      if (!$("#w-confirm").checked) throw new Error("Tick the box to confirm that files at their original paths will be overwritten.");
      req.in_place = true;
    } else {
      req.target_path = $("#w-path").value.trim();
      if (!req.target_path.startsWith("/") && !/^[A-Za-z]:[\\/]/.test(req.target_path)) throw new Error("Give the target folder as an absolute path, e.g. /srv/restore.");
    }
    return req;
  }

  $("#w-back-1").addEventListener("click", () => step(1));
  $("#w-to-3").addEventListener("click", () => {
    const o = origHost();
    if (sourceOf(st.snap.tags) && o) $("#w-host").value = o.value;
    syncTarget(); step(3);
  });
  $("#w-back-2").addEventListener("click", () => step(2));
  $("#w-back-3").addEventListener("click", () => step(3));
  $("#w-to-4").addEventListener("click", () => {
    let req;
    try { req = request(); } catch (e) { err(e); return; }
    const hostName = (id) => { const o = $$("#w-host option").find(x => x.value === id); return o ? o.textContent : id; };
    const rows = [["Repository", repoSel.selectedOptions[0].textContent], ["Snapshot", $("#w-snap-label").textContent],
      ["Paths", (req.include || []).join("\n") || "the whole dump"], ["Target host", hostName(req.target_host_id)],
      ["Target", req.to_source ? "the agent's restore command for source " + req.to_source : req.in_place ? "original location (overwrite)" : req.target_path + " (files keep their full path under it)"],
      ["Bandwidth", limitText(req) || "unlimited"]];
    $("#w-review").replaceChildren(...rows.flatMap(([k, v]) => [el("dt", {}, k), el("dd", { class: k === "Paths" ? "files" : "" }, v)]));
    step(4);
  });
  $("#w-run").addEventListener("click", async () => {
    $("#w-run").disabled = true;
    try {
      const r = await api("POST", "/api/v1/restores", request());
      location.href = "/jobs/" + encodeURIComponent(r.data.job_id);
    } catch (e) { err(e); $("#w-run").disabled = false; }
  });

  if (main.dataset.repo) { repoSel.value = main.dataset.repo; }
  if (repoSel.value) loadSnapshots();
}

// ---- settings: users, tokens, enrolment keys, channels and integration accounts
function settingsPage(main) {
  const uf = $("#user-form");
  if (uf) uf.addEventListener("submit", async ev => {
    ev.preventDefault();
    try {
      await api("POST", "/api/v1/users", { name: uf.elements.name.value.trim(), password: uf.elements.password.value, role: uf.elements.role.value });
      location.reload();
    } catch (e) { showError($("#user-error"), e); }
  });

  // Users (admins): every change goes through PATCH or DELETE
  // /api/v1/users/{name}; one that ends the caller's own session lands on
  // the login page at the reload.
  const userPath = name => "/api/v1/users/" + encodeURIComponent(name);
  const usersErr = $("#users-error");
  const changeUser = async (name, body) => {
    showError(usersErr);
    try { await api("PATCH", userPath(name), body); location.reload(); return true; }
    catch (e) { showError(usersErr, e); return false; }
  };
  $$(".user-role").forEach(sel => sel.addEventListener("change", async () => {
    const name = sel.dataset.name, role = sel.value;
    if (!confirm("Make " + name + " " + (role === "admin" ? "an " : "a ") + role + "? Their sessions end.") || !(await changeUser(name, { role }))) sel.value = sel.dataset.role;
  }));
  $$(".toggle-user").forEach(b => b.addEventListener("click", () => {
    const name = b.dataset.name, disable = b.dataset.disabled !== "true";
    const msg = disable ? "Disable " + name + "? They are logged out and cannot log in, and their tokens stop working, until enabled again." : "Enable " + name + " again?";
    if (confirm(msg)) changeUser(name, { disabled: disable });
  }));
  $$(".delete-user").forEach(b => b.addEventListener("click", async () => {
    const name = b.dataset.name;
    if (!confirm("Delete user " + name + "? Their sessions end and their API tokens are revoked. This cannot be undone.")) return;
    showError(usersErr);
    try { await api("DELETE", userPath(name)); location.reload(); }
    catch (e) { showError(usersErr, e); }
  }));
  $$(".reset-second-factor").forEach(b => b.addEventListener("click", async () => {
    const name = b.dataset.name;
    if (!confirm("Reset the second factor of " + name + "? They log in with the password alone until they set up a new one.")) return;
    showError(usersErr);
    try { await api("DELETE", userPath(name) + "/totp"); location.reload(); }
    catch (e) { showError(usersErr, e); }
  }));
  const req = $("#require-second-factor");
  if (req) req.addEventListener("change", async () => {
    showError($("#signin-error"));
    try { await api("PUT", "/api/v1/settings/sign-in", { second_factor_required: req.checked }); }
    catch (e) { req.checked = !req.checked; showError($("#signin-error"), e); }
  });
  const dlg = $("#password-dialog");
  if (dlg) {
    const pf = $("#password-form");
    $$(".reset-password").forEach(b => b.addEventListener("click", () => {
      pf.reset(); showError($("#password-error"));
      pf.dataset.name = b.dataset.name;
      $("#password-user").textContent = b.dataset.name;
      dlg.showModal();
    }));
    $("#password-cancel").addEventListener("click", () => dlg.close());
    pf.addEventListener("submit", async ev => {
      ev.preventDefault();
      try {
        await api("PATCH", userPath(pf.dataset.name), { password: pf.elements.password.value });
        dlg.close(); location.reload();
      } catch (e) { showError($("#password-error"), e); }
    });
  }

  const tf = $("#token-form");
  tf.addEventListener("submit", async ev => {
    ev.preventDefault();
    try {
      const r = await api("POST", "/api/v1/tokens", { name: tf.elements.name.value.trim(), expires_in: tf.elements.expires_in.value, role: tf.elements.role.value });
      $("#token-value").textContent = r.data.token;
      $("#token-new").hidden = false; showError($("#token-error"));
      // The list shows the new token at the next visit; the value is only
      // here, so do not reload it away.
      const exp = r.data.expires_at ? fmtTime(r.data.expires_at) : "never";
      const tb = $("#tokens tbody");
      tb.prepend(el("tr", { "data-token": r.data.id }, el("td", {}, r.data.name), el("td", {}, main.dataset.user || ""), el("td", {}, r.data.role), el("td", {}, "just now"), el("td", {}, exp), el("td", {}, "never"), el("td", {})));
    } catch (e) { showError($("#token-error"), e); }
  });
  $$(".delete-token").forEach(b => b.addEventListener("click", async () => {
    if (!confirm("Revoke this token? Scripts using it stop working.")) return;
    try { await api("DELETE", "/api/v1/tokens/" + encodeURIComponent(b.dataset.id)); location.reload(); }
    catch (e) { showError($("#token-error"), e); }
  }));

  enrollKeyForm();
  $$(".delete-enroll-key").forEach(b => b.addEventListener("click", async () => {
    if (!confirm("Delete the enrolment key " + b.dataset.name + "? Machines can no longer enrol with it; the hosts it made stay.")) return;
    try { await api("DELETE", "/api/v1/enroll-keys/" + encodeURIComponent(b.dataset.id)); location.reload(); }
    catch (e) { showError($("#enroll-keys-error"), e); }
  }));

  $$(".delete-channel").forEach(b => b.addEventListener("click", async () => {
    if (!confirm("Delete the channel " + b.dataset.name + "? Alerts are no longer sent through it.")) return;
    try { await api("DELETE", "/api/v1/channels/" + encodeURIComponent(b.dataset.id)); location.reload(); }
    catch (e) { showError($("#channels-error"), e); }
  }));
  $$(".delete-mqtt-user").forEach(b => b.addEventListener("click", async () => {
    if (!confirm("Delete the MQTT account " + b.dataset.name + "? The integration using it is disconnected and cannot log in again.")) return;
    try { await api("DELETE", "/api/v1/mqtt-users/" + encodeURIComponent(b.dataset.name)); location.reload(); }
    catch (e) { showError($("#mqtt-users-error"), e); }
  }));
}

// enrollKeyForm: making an enrolment key (admins), on the settings page and
// in the dashboard's "Add hosts". The key and its lines are in the answer to
// POST only, so they are shown here and the page is not reloaded.
function enrollKeyForm() {
  const kf = $("#enroll-key-form");
  if (!kf) return;
  kf.addEventListener("submit", async ev => {
    ev.preventDefault();
    const err = $("#enroll-key-error");
    try {
      const labels = {};
      for (const item of commas(kf.elements.labels.value)) {
        const i = item.indexOf("=");
        if (i < 0) throw new Error("Labels: write key=value, separated by commas (e.g. role=web,site=berlin); \"" + item + "\" has no =.");
        labels[item.slice(0, i).trim()] = item.slice(i + 1).trim();
      }
      const r = await api("POST", "/api/v1/enroll-keys", {
        name: kf.elements.name.value.trim(), labels, max_uses: num(kf.elements.max_uses.value),
        expires_in: kf.elements.expires_in.value, allow_agent_labels: kf.elements.allow_agent_labels.checked,
      });
      const k = r.data, ic = k.install_commands || {};
      $("#enroll-key-value").textContent = k.key;
      $("#enroll-key-linux").textContent = ic.linux || "";
      $("#enroll-key-windows").textContent = ic.windows || "";
      $("#enroll-key-command").textContent = k.enroll_command || "";
      $("#enroll-key-new").hidden = false; showError(err);
      const tb = $("#enroll-keys tbody"); // the list, on the settings page only
      if (tb) {
        const lbl = Object.keys(k.labels || {}).sort().map(n => n + "=" + k.labels[n]).join(" ") || "—";
        $$("#enroll-keys tbody tr:not([data-enroll-key])").forEach(tr => tr.remove());
        tb.prepend(el("tr", { "data-enroll-key": k.id }, el("td", {}, k.name), el("td", {}, lbl),
          el("td", {}, "0 / " + (k.max_uses ? String(k.max_uses) : "no limit")), el("td", {}, fmtTime(k.expires_at)), el("td", {}, "just now"), el("td", {})));
      }
      kf.reset();
    } catch (e) { showError(err, e); }
  });
}

// ---- dashboard: add a host and show its install line; run a job on the
// hosts the filter matches
function dashboardPage() {
  bulkRun();
  enrollKeyForm();
  const f = $("#add-host-form");
  if (!f) return;
  f.addEventListener("submit", async ev => {
    ev.preventDefault();
    try {
      const r = await api("POST", "/api/v1/hosts", { name: f.elements.name.value.trim() });
      const ic = r.data.install_commands || {};
      $("#install-linux").textContent = ic.linux || "";
      $("#install-windows").textContent = ic.windows || "";
      $("#enroll-command").textContent = r.data.enroll_command || "";
      $("#add-host-result").hidden = false;
      showError($("#add-host-error"));
    } catch (e) { showError($("#add-host-error"), e); }
  });
}

// bulkRun: pick an operation and a repository, confirm with the count,
// then one POST /api/v1/jobs/bulk with the matching hosts' IDs (the page
// lists every one, not only those shown), so what runs is what was
// confirmed. The answer lists the jobs made and each refused host's reason.
function bulkRun() {
  const box = $("#bulk-run"), f = $("#bulk-form");
  if (!box || !f) return;
  const hosts = (box.dataset.hosts || "").split(" ").filter(Boolean);
  const n = hosts.length, many = n === 1 ? "1 host" : n + " hosts";
  const verbs = { backup: "Back up " + many, check: "Check the repository from " + many, snapshots: "List the snapshots from " + many,
    unlock: "Remove stale locks from " + many, init: "Initialise the repository from " + many };
  const err = $("#bulk-error"), confirmBox = $("#bulk-confirm"), yes = $("#bulk-yes");
  let request = null;
  wireKind(f);
  f.addEventListener("submit", ev => {
    ev.preventDefault();
    const kind = f.elements.kind.value, repo = f.elements.repo_id;
    const body = { host_ids: hosts, kind, repo_id: repo.value };
    if (kind === "backup") {
      body.args = { paths: lines(f.elements.paths.value) };
      if (body.args.paths.length === 0) { showError(err, new Error("Give at least one path to back up.")); return; }
    }
    showError(err);
    request = body;
    $("#bulk-question").textContent = (verbs[kind] || "Run " + kind + " on " + many) + " now?";
    $("#bulk-detail").textContent = "Repository " + repo.options[repo.selectedIndex].text + ". Each host gets its own job.";
    f.hidden = true;
    confirmBox.hidden = false;
    yes.disabled = false;
    yes.focus();
  });
  $("#bulk-back").addEventListener("click", () => { confirmBox.hidden = true; f.hidden = false; });
  yes.addEventListener("click", async () => {
    if (!request) return;
    yes.disabled = true;
    try {
      const r = await api("POST", "/api/v1/jobs/bulk", request);
      const ids = r.data.job_ids || [], refused = r.data.refused || [];
      confirmBox.hidden = true;
      $("#bulk-made").textContent = ids.length === 1 ? "1 job made." : ids.length + " jobs made.";
      const jobs = $("#bulk-jobs");
      jobs.replaceChildren(...ids.slice(0, 20).map(id => el("li", {}, el("a", { href: "/jobs/" + encodeURIComponent(id) }, id))));
      if (ids.length > 20) jobs.append(el("li", {}, "and " + (ids.length - 20) + " more (see Recent jobs)"));
      const head = $("#bulk-refused-head");
      head.hidden = refused.length === 0;
      head.textContent = (refused.length === 1 ? "1 host" : refused.length + " hosts") + " refused:";
      // A host of the page shown is named; the others by their ID.
      const name = id => { const a = $$("tr[data-host] .host-link").find(a => a.closest("tr").dataset.host === id); return a ? a.textContent : id; };
      $("#bulk-refused").replaceChildren(...refused.map(x => el("li", { "data-host": x.host_id },
        el("a", { href: "/hosts/" + encodeURIComponent(x.host_id) }, name(x.host_id)), ": " + x.error)));
      $("#bulk-result").hidden = false;
      showError(err);
    } catch (e) { showError(err, e); yes.disabled = false; }
  });
}

// ---- alerts: acknowledge and silence
function alertsPage() {
  const act = (sel, path, body) => $$(sel).forEach(b => b.addEventListener("click", async () => {
    try { await api("POST", "/api/v1/alerts/" + encodeURIComponent(b.dataset.id) + path, body); location.reload(); }
    catch (e) { showError($("#alert-error"), e); }
  }));
  act(".ack-alert", "/ack");
  act(".silence-alert", "/silence", { for: "8h" });
}

// ---- policies: the editor (admins). The policy goes whole to
// POST /api/v1/policies or PUT /api/v1/policies/{id}; the page then shows
// how many hosts' schedules changed.

// parseKV reads key=value lines (or commas) into an object; what names
// the kind of item ("label", "variable") for the error.
function parseKV(text, what, sep) {
  const out = Object.create(null);
  for (const item of text.split(sep || /[\n,]/).map(x => x.trim()).filter(Boolean)) {
    const i = item.indexOf("=");
    if (i < 0) throw new Error("Write each " + what + " as key=value: \"" + item + "\" has no '='.");
    const k = item.slice(0, i).trim();
    if (k in out) throw new Error("The key \"" + k + "\" is given twice.");
    out[k] = item.slice(i + 1).trim();
  }
  return out;
}

// cronPreviewer shows what a cron field means and its next runs (the
// console's /ui/cron helper), debounced.
function cronPreviewer(f, preview) {
  let timer;
  const update = () => {
    clearTimeout(timer);
    timer = setTimeout(async () => {
      if (!f.cron.value.trim()) { preview.textContent = ""; return; }
      try {
        const r = await api("GET", "/ui/cron?cron=" + encodeURIComponent(f.cron.value) + "&timezone=" + encodeURIComponent(f.timezone.value));
        preview.replaceChildren(el("strong", {}, r.data.description), el("div", { class: "sub" }, "next: " + r.data.next_runs.map(fmtTime).join(" · ") + " (before each host's jitter)"));
      } catch (e) { preview.replaceChildren(el("span", { class: "error" }, e.message)); }
    }, 250);
  };
  f.cron.addEventListener("input", update);
  f.timezone.addEventListener("input", update);
  return update;
}

// scheduleFromForm reads a schedule editor's fields (old keeps the ID and
// jitter of an edited schedule).
function scheduleFromForm(form, old) {
  const f = form.elements;
  const s = { name: f.name.value.trim(), kind: f.kind.value, cron: f.cron.value.trim(), timezone: f.timezone.value.trim(), enabled: f.enabled.checked };
  if (old && old.id) s.id = old.id;
  if (old && old.jitter_s !== undefined) s.jitter_s = old.jitter_s;
  switch (s.kind) {
    case "backup": s.paths = lines(f.paths.value); s.excludes = lines(f.excludes.value); s.tags = commas(f.tags.value); backupExtras(form, s); break;
    case "forget": s.retention = retention(form); s.prune = f.prune.checked; break;
    case "prune": if (f.max_unused.value) s.max_unused = f.max_unused.value; break;
    case "check": if (f.read_data_subset.value) s.read_data_subset = f.read_data_subset.value; break;
  }
  return s;
}

function scheduleToForm(form, s) {
  const f = form.elements;
  f.name.value = s.name || ""; f.kind.value = s.kind; f.cron.value = s.cron || ""; f.timezone.value = s.timezone || "";
  f.enabled.checked = !!s.enabled;
  f.paths.value = (s.paths || []).join("\n"); f.excludes.value = (s.excludes || []).join("\n"); f.tags.value = (s.tags || []).join(", ");
  const r = s.retention || {};
  for (const k of ["keep_last", "keep_hourly", "keep_daily", "keep_weekly", "keep_monthly", "keep_yearly", "keep_within"]) f[k].value = r[k] || "";
  f.prune.checked = !!s.prune; f.max_unused.value = s.max_unused || ""; f.read_data_subset.value = s.read_data_subset || "";
  backupExtrasToForm(form, s);
}

function plural(n, unit) { return n + " " + unit + (n === 1 ? "" : "s"); }

function policyPage(main) {
  const form = $("#policy-form");
  if (!form) return; // read-only: not an admin
  const id = main.dataset.policyId;
  const f = form.elements;

  // Selector: a live "matches N hosts" while the admin types.
  const preview = $("#policy-preview");
  let ptimer, pseq = 0;
  const updateMatch = () => {
    clearTimeout(ptimer);
    ptimer = setTimeout(async () => {
      const seq = ++pseq;
      let sel;
      try { sel = parseKV(f.selector.value, "label"); } catch (e) { preview.replaceChildren(el("span", { class: "error" }, e.message)); return; }
      const q = Object.keys(sel).map(k => k + "=" + sel[k]).join(",");
      try {
        const r = await api("GET", "/api/v1/policies/preview?selector=" + encodeURIComponent(q));
        if (seq !== pseq) return; // a later keystroke asked again
        preview.dataset.hosts = String(r.data.hosts);
        preview.replaceChildren(el("strong", {}, "matches " + plural(r.data.hosts, "host")), q ? "" : " (no selector: every host)");
      } catch (e) { if (seq === pseq) preview.replaceChildren(el("span", { class: "error" }, e.message)); }
    }, 300);
  };
  f.selector.addEventListener("input", updateMatch);
  updateMatch();

  // Repository: an existing one, or a template making one per host.
  const syncRepo = () => {
    const tpl = form.querySelector("input[name=repo_mode]:checked").value === "template";
    $$(".repo-existing", form).forEach(x => { x.hidden = tpl; });
    $$(".repo-template", form).forEach(x => { x.hidden = !tpl; });
  };
  $$("input[name=repo_mode]", form).forEach(r => r.addEventListener("change", syncRepo));
  syncRepo();

  // Schedules: a list kept here, edited through the small form, saved with
  // the policy.
  let set = [];
  try { set = JSON.parse(main.dataset.schedules || "[]") || []; } catch (e) { set = []; }
  const ed = $("#policy-schedule-editor"), box = $("#policy-schedule-box");
  const syncKind = wireKind(ed);
  const cron = cronPreviewer(ed.elements, $("#policy-cron-preview"));
  const render = () => {
    const tb = $("#policy-sched-list tbody");
    if (set.length === 0) { tb.replaceChildren(el("tr", {}, el("td", { colSpan: 4 }, "No schedules yet: add one below."))); return; }
    tb.replaceChildren(...set.map((s, i) => {
      const edit = el("button", { type: "button", class: "small policy-edit-schedule" }, "Edit");
      edit.addEventListener("click", () => {
        scheduleToForm(ed, s); ed.elements.index.value = String(i);
        syncKind(); cron(); box.open = true; ed.elements.name.focus();
      });
      const del = el("button", { type: "button", class: "small danger policy-remove-schedule" }, "Remove");
      del.addEventListener("click", () => { set.splice(i, 1); render(); });
      const detail = s.kind === "backup" ? (s.paths || []).join(", ") : "";
      return el("tr", { "data-index": String(i) }, el("td", {}, s.name, s.enabled ? null : el("span", { class: "badge st-queued" }, " disabled")),
        el("td", {}, s.kind, detail ? el("div", { class: "sub" }, detail) : null), el("td", {}, el("code", {}, s.cron)), el("td", {}, edit, " ", del));
    }));
  };
  render();
  const fp = ed.querySelector(".forget-preview-run");
  if (fp) fp.addEventListener("click", () => {
    const out = ed.querySelector(".forget-preview");
    if (form.querySelector("input[name=repo_mode]:checked").value === "template" || !f.repo_id.value) {
      out.replaceChildren(el("p", {}, "A preview needs the policy's shared repository; each host's own repository (a template) is previewed on its host's page."));
      return;
    }
    runForgetPreview(fp, out, f.repo_id.value, { retention: retention(ed) });
  });
  ed.addEventListener("reset", () => setTimeout(() => { ed.elements.index.value = ""; syncKind(); $("#policy-cron-preview").textContent = ""; if (fp) ed.querySelector(".forget-preview").textContent = ""; }));
  ed.addEventListener("submit", ev => {
    ev.preventDefault();
    const i = ed.elements.index.value === "" ? -1 : num(ed.elements.index.value);
    let s;
    try { s = scheduleFromForm(ed, i >= 0 ? set[i] : null); } catch (e) { showError($("#policy-schedule-error"), e); return; }
    if (!s.name || !s.cron) { showError($("#policy-schedule-error"), new Error("A schedule needs a name and a cron expression.")); return; }
    if (s.kind === "backup" && s.paths.length === 0 && !s.sources) { showError($("#policy-schedule-error"), new Error("Give at least one path or source to back up.")); return; }
    showError($("#policy-schedule-error"));
    if (i >= 0) set[i] = s; else set.push(s);
    render();
    ed.reset();
    box.open = false;
  });

  form.addEventListener("submit", async ev => {
    ev.preventDefault();
    const err = $("#policy-error");
    const body = { name: f.name.value.trim(), schedules: set.map(s => { const c = Object.assign({}, s); delete c.repo_id; delete c.policy_id; return c; }), rpo: f.rpo.value.trim() };
    try {
      if (ed.elements.name.value.trim() || ed.elements.cron.value.trim()) throw new Error("The schedule editor holds a schedule not put in the list: put it in the list, or clear it.");
      body.selector = parseKV(f.selector.value, "label");
      if (form.querySelector("input[name=repo_mode]:checked").value === "template") {
        body.repo_template = { url: f.template_url.value.trim(), init: f.template_init.checked };
        // The environment is never shown: empty keeps the stored one.
        if (f.template_env.value.trim()) body.repo_template.env = parseKV(f.template_env.value, "variable", /\n/);
      } else {
        if (!f.repo_id.value) throw new Error("There is no repository yet: add one, or use a template.");
        body.repo_id = f.repo_id.value;
      }
      if (f.guard.value !== "") body.forget_guard = { max_remove_percent: num(f.guard.value) };
      if (f.copy_to_repo_id.value) body.copy_to_repo_id = f.copy_to_repo_id.value;
      if (f.copy_lag_max.value !== "") body.copy_lag_max = num(f.copy_lag_max.value);
      if (f.drill_cron.value.trim()) body.drill = { cron: f.drill_cron.value.trim(), sample_files: num(f.drill_files.value), sample_bytes: num(f.drill_mib.value) * 1048576 };
    } catch (e) { showError(err, e); return; }
    showError(err);
    $("#policy-save").disabled = true;
    try {
      const r = id ? await api("PUT", "/api/v1/policies/" + encodeURIComponent(id), body) : await api("POST", "/api/v1/policies", body);
      location.href = "/policies/" + encodeURIComponent(r.data.id) + "?changed=" + encodeURIComponent(r.data.changed || 0);
    } catch (e) { showError(err, e); $("#policy-save").disabled = false; }
  });

  const del = $("#policy-delete");
  if (del) del.addEventListener("click", async () => {
    const n = num(main.dataset.hosts);
    if (!confirm("Delete the policy " + main.dataset.name + "? Its schedules leave the " + plural(n, "host") + " it matches. This cannot be undone.")) return;
    del.disabled = true;
    try {
      const r = await api("DELETE", "/api/v1/policies/" + encodeURIComponent(id));
      location.href = "/policies?deleted=" + encodeURIComponent(r.data.changed || 0);
    } catch (e) { showError($("#policy-error"), e); del.disabled = false; }
  });
}

// localTimes shows every <time datetime> the server wrote in the viewer's
// time zone: an exact time ("abs") becomes local, with its age on hover; a
// relative age ("rel") keeps its text, with the exact local time on hover.
function relAge(d) {
  const s = (Date.now() - d.getTime()) / 1000;
  const unit = (n, u) => Math.floor(n) + " " + u + (Math.floor(n) === 1 ? "" : "s");
  if (s < -60) return "in the future";
  if (s < 60) return "just now";
  if (s < 3600) return unit(s / 60, "minute") + " ago";
  if (s < 172800) return unit(s / 3600, "hour") + " ago";
  return unit(s / 86400, "day") + " ago";
}
function localTimes(root) {
  const zone = Intl.DateTimeFormat().resolvedOptions().timeZone || "local time";
  for (const t of root.querySelectorAll("time[datetime]")) {
    const d = new Date(t.getAttribute("datetime"));
    if (isNaN(d)) continue;
    if (t.classList.contains("abs")) { t.title = relAge(d) + " (" + zone + ")"; t.textContent = fmtTime(d.toISOString()).slice(0, 16); }
    else t.title = fmtTime(d.toISOString()) + " " + zone;
  }
}

// ---- second factor: set up (the secret and recovery codes are shown
// once, the QR code is a PNG the server renders), then confirm with a code.
function secondFactorPage() {
  const start = $("#sf-start");
  if (!start) return;
  const err = $("#sf-error");
  start.addEventListener("click", async () => {
    showError(err);
    try {
      const r = await api("POST", "/api/v1/me/totp");
      $("#sf-secret").textContent = r.data.secret;
      const ul = $("#sf-codes");
      ul.replaceChildren(...r.data.recovery_codes.map(c => el("li", {}, el("code", {}, c))));
      $("#sf-qr").src = "/second-factor/qr.png?" + Date.now();
      $("#sf-enrol").hidden = false;
      start.hidden = true;
    } catch (e) { showError(err, e); }
  });
  const f = $("#sf-confirm");
  f.addEventListener("submit", async ev => {
    ev.preventDefault();
    showError(err);
    try {
      await api("POST", "/api/v1/me/totp/confirm", { code: f.elements.code.value.trim() });
      location.href = "/second-factor";
    } catch (e) { showError(err, e); }
  });
}

// skipLink moves the keyboard's focus to the page's main content (the first
// link of every page, shown when focused), past the navigation.
function skipLink() {
  const link = $("#skip-link");
  const main = $("main");
  if (!link || !main) return;
  main.tabIndex = -1;
  if (!main.id) main.id = "main";
  link.href = "#" + main.id;
  link.addEventListener("click", (e) => {
    e.preventDefault();
    main.focus();
  });
}

// focusScrollers lets the keyboard scroll what scrolls inside its own box
// (a wide table at phone width, a long log): such a box takes the focus,
// with its heading or label as its name. Run again when the page draws more
// or its width changes.
function focusScrollers() {
  for (const e of $$("pre, .table-wrap, .files")) {
    const scrolls = e.scrollWidth > e.clientWidth + 1 || e.scrollHeight > e.clientHeight + 1;
    if (scrolls && !e.hasAttribute("tabindex")) {
      e.tabIndex = 0;
      e.dataset.scroller = "1";
    } else if (!scrolls && e.dataset.scroller) {
      e.removeAttribute("tabindex");
      delete e.dataset.scroller;
    }
  }
}

function watchScrollers() {
  let queued = false;
  const again = () => {
    if (queued) return;
    queued = true;
    requestAnimationFrame(() => { queued = false; focusScrollers(); });
  };
  again();
  window.addEventListener("resize", again);
  document.addEventListener("toggle", again, true);
  new MutationObserver(again).observe(document.body, { childList: true, subtree: true });
}

document.addEventListener("DOMContentLoaded", () => {
  localTimes(document);
  skipLink();
  watchScrollers();
  const main = $("main[data-page]");
  if (!main) return;
  const pages = { host: hostPage, job: jobPage, repo: repoPage, restore: restorePage, settings: settingsPage, alerts: alertsPage, dashboard: dashboardPage, policy: policyPage, "second-factor": secondFactorPage };
  pages.repos = reposPage;
  pages.integrations = integrationsPage;
  pages.audit = auditPage;
  const fn = pages[main.dataset.page];
  if (fn) fn(main);
});

// ---- server errors by their fields (the repositories, integrations and
// audit pages). The API answers {"error": "..."}; a message whose leading
// words name a field ("password: at least 12 characters", "url is
// required", "maintenance host … does not exist") is shown next to the
// input whose data-field lists that name, the rest on the form's error line.

// fieldOf finds the visible element of form that msg is about: two leading
// words joined by "_" first (maintenance host → maintenance_host), then one.
function fieldOf(form, msg) {
  const m = /^([a-z][a-z_]*)(?:\s+([a-z]+)\b)?/i.exec(msg.trim());
  if (!m) return null;
  const names = m[2] ? [(m[1] + "_" + m[2]).toLowerCase(), m[1].toLowerCase()] : [m[1].toLowerCase()];
  for (const n of names) {
    const f = $$("[data-field]", form).find(x => x.dataset.field.split(" ").includes(n) && !x.closest("[hidden]"));
    if (f) return f;
  }
  return null;
}

function clearFieldErrors(form) {
  $$(".field-error", form).forEach(e => e.remove());
  $$("[aria-invalid]", form).forEach(e => { e.removeAttribute("aria-invalid"); e.removeAttribute("aria-describedby"); });
}

let fieldErrorSeq = 0;
// showFieldError puts msg right after input, marks the input invalid (and
// described by the message for screen readers) until it is edited.
function showFieldError(input, msg) {
  const id = "field-error-" + (++fieldErrorSeq);
  const span = el("span", { class: "field-error", id }, msg);
  span.setAttribute("role", "alert");
  span.dataset.for = input.name || input.dataset.field;
  input.after(span);
  input.setAttribute("aria-invalid", "true");
  input.setAttribute("aria-describedby", id);
  const clear = () => { span.remove(); input.removeAttribute("aria-invalid"); input.removeAttribute("aria-describedby"); };
  input.addEventListener("input", clear, { once: true });
  input.addEventListener("change", clear, { once: true });
}

// formError shows err by the fields its lines name and the rest on line;
// no err clears both. Refusals of the role are never a field's.
function formError(form, line, err) {
  clearFieldErrors(form);
  if (!err) { showError(line); return; }
  const rest = [];
  const refused = err.status === 401 || err.status === 403;
  for (const msg of String(err.message || err).split("\n").map(s => s.trim()).filter(Boolean)) {
    const input = refused ? null : fieldOf(form, msg);
    if (input) showFieldError(input, msg); else rest.push(msg);
  }
  showError(line, rest.length ? new Error(rest.join("\n")) : null);
  const first = form.querySelector("[aria-invalid=true]");
  if (first && typeof first.focus === "function") first.focus();
}

// pollJob waits for a job to end (GET /api/v1/jobs/{id} each second).
async function pollJob(id, timeoutMs) {
  const until = Date.now() + timeoutMs;
  for (;;) {
    const j = (await api("GET", "/api/v1/jobs/" + encodeURIComponent(id))).data;
    if (terminal.has(j.status)) return j;
    if (Date.now() > until) throw new Error("The job is still " + j.status + ": follow it on its page.");
    await new Promise(r => setTimeout(r, 1000));
  }
}

// ---- repositories: the list, and "Add a repository" (admins) with its
// test-connection step: after the repository is saved, a bound host runs
// restic snapshots through POST /repos/{id}/test; a repository that does
// not exist yet is offered "Initialise it" (an init job), then tested again.
function reposPage(main) {
  const form = $("#repo-form");
  if (!form) return;
  const f = form.elements, line = $("#repo-error");
  const step = $("#repo-test-step"), hostSel = $("#repo-test-host"), result = $("#repo-test-result"), offer = $("#repo-init-offer"), terr = $("#repo-test-error");
  const boxes = $$("input[name=hosts]", form);
  const box = id => boxes.find(b => b.value === id);
  const hostLabel = () => { const b = box(hostSel.value); return b ? b.dataset.name : hostSel.value; };
  let repoID = "";

  form.addEventListener("submit", async ev => {
    ev.preventDefault();
    formError(form, line, null);
    if (f.password.value !== f.password_repeat.value) {
      showFieldError(f.password_repeat, "The two passwords differ: type the same password twice.");
      f.password_repeat.focus();
      return;
    }
    const body = { name: f.name.value.trim(), url: f.url.value.trim(), password: f.password.value, hosts: boxes.filter(b => b.checked).map(b => b.value) };
    try {
      const env = parseKV(f.env.value, "variable", /\n/);
      if (Object.keys(env).length) body.env = env;
    } catch (e) { showFieldError(f.env, e.message); f.env.focus(); return; }
    if (f.maint_url.value.trim() || f.maint_host.value) {
      body.maintenance = { url: f.maint_url.value.trim(), host_id: f.maint_host.value };
      if (f.maint_password.value) body.maintenance.password = f.maint_password.value;
    }
    $("#repo-add").disabled = true;
    try {
      const r = await api("POST", "/api/v1/repos", body);
      repoID = r.data.id;
      // The secrets leave the page: the form is emptied and put away.
      form.reset();
      form.hidden = true;
      $("#add-repo").hidden = true;
      testStep(r.data);
    } catch (e) { formError(form, line, e); }
    $("#repo-add").disabled = false;
  });

  function testStep(repo) {
    const link = $("#repo-new-link");
    link.textContent = repo.name;
    link.href = "/repos/" + encodeURIComponent(repo.id);
    $$(".repo-page-link", step).forEach(a => { a.href = link.href; });
    const hosts = repo.hosts || [];
    hostSel.replaceChildren(...hosts.map(id => {
      const b = box(id);
      return el("option", { value: id }, (b ? b.dataset.name : id) + (b && !b.dataset.online ? " (offline)" : ""));
    }));
    const online = hosts.find(id => box(id) && box(id).dataset.online);
    if (online) hostSel.value = online;
    hostSel.closest("p").hidden = hosts.length === 0;
    $("#repo-test-none").hidden = hosts.length > 0;
    step.hidden = false;
    if (hosts.length) $("#repo-test-run").focus();
  }

  const notThere = s => /Is there a repository at the following location|config file does not exist|unable to open config file|repository does not exist/i.test(s || "");
  async function runTest() {
    const btn = $("#repo-test-run");
    btn.disabled = true;
    offer.hidden = true;
    showError(terr);
    result.className = "";
    result.textContent = "Testing from " + hostLabel() + "…";
    try {
      const r = (await api("POST", "/api/v1/repos/" + encodeURIComponent(repoID) + "/test", { host_id: hostSel.value })).data;
      const job = el("a", { href: "/jobs/" + encodeURIComponent(r.job_id) }, "job");
      if (r.ok) {
        result.className = "result-ok";
        result.replaceChildren("✔ Connected from " + hostLabel() + ": " + plural(r.snapshots, "snapshot") + " (", job, ").");
      } else if (r.status === "queued" || r.status === "running") {
        result.replaceChildren("The test is still " + r.status + " on " + hostLabel() + " — is it online? (", job, ") Test again once it is.");
      } else {
        result.className = "error";
        result.replaceChildren("✘ " + (r.error || r.status) + " (", job, ")");
        offer.hidden = !notThere(r.error);
      }
      result.dataset.outcome = r.ok ? "ok" : r.status;
    } catch (e) { result.textContent = ""; showError(terr, e); }
    btn.disabled = false;
  }
  $("#repo-test-run").addEventListener("click", runTest);
  $("#repo-init-run").addEventListener("click", async () => {
    const b = $("#repo-init-run");
    b.disabled = true;
    showError(terr);
    try {
      const r = await api("POST", "/api/v1/hosts/" + encodeURIComponent(hostSel.value) + "/jobs", { kind: "init", repo_id: repoID });
      offer.hidden = true;
      result.className = "";
      result.dataset.outcome = "initialising";
      result.replaceChildren("Initialising from " + hostLabel() + " (", el("a", { href: "/jobs/" + encodeURIComponent(r.data.job_id) }, "job"), ")…");
      const j = await pollJob(r.data.job_id, 120000);
      if (j.status !== "succeeded") throw new Error("restic init " + j.status + ": " + (j.error || "see the job's page"));
      await runTest();
    } catch (e) { showError(terr, e); }
    b.disabled = false;
  });
}

// ---- integrations (admins): notification channels (add, edit, send a
// test, delete, each one's last delivery), MQTT integration accounts (the
// password shown once) and the console's settings.
function deliveryCell(d) {
  if (!d) return [el("span", { class: "sub" }, "nothing sent yet")];
  const when = el("span", { class: "sub" }, " " + fmtTime(d.at) + (d.event ? " · " + d.event : ""));
  when.title = d.at;
  if (d.ok) return [el("span", { class: "badge st-succeeded" }, "delivered"), when];
  return [el("span", { class: "badge st-failed" }, "failed"), " ", el("span", { class: "delivery-error sub" }, d.error || ""), when];
}

function integrationsPage() {
  const form = $("#channel-form");
  if (!form) return;
  const f = form.elements, line = $("#channel-error");
  const syncKind = () => {
    $$("[class*='k-']", form).forEach(x => { x.hidden = !x.classList.contains("k-" + f.kind.value); });
  };
  f.kind.addEventListener("change", syncKind);
  syncKind();
  // The settings of the chosen kind; on an edit, none given keeps them.
  const configInputs = () => $$("input", form).filter(i => i.type !== "hidden" && i.name !== "name" && !i.closest("[hidden]"));
  const config = () => {
    const v = n => f[n].value.trim(), c = {};
    if (f.kind.value === "email") {
      if (v("smtp_host")) c.smtp_host = v("smtp_host");
      if (v("smtp_port")) c.smtp_port = num(v("smtp_port"));
      c.starttls = f.starttls.value;
      if (v("username")) c.username = v("username");
      if (f.smtp_password.value) c.password = f.smtp_password.value;
      if (v("from")) c.from = v("from");
      const to = commas(f.to.value);
      if (to.length) c.to = to;
    } else {
      if (v("url")) c.url = v("url");
      if (f.secret.value && !f.secret.closest("[hidden]")) c.secret = f.secret.value;
      if (f.kind.value === "ntfy" && v("topic")) c.topic = v("topic");
    }
    return c;
  };
  const editing = () => f.id.value !== "";
  const endEdit = () => {
    form.reset();
    f.id.value = "";
    f.kind.disabled = false;
    $("#channel-edit-note").hidden = true;
    $("#channel-cancel").hidden = true;
    $("#channel-form-head").textContent = "Add a channel";
    $("#channel-save").textContent = "Add the channel";
    formError(form, line, null);
    syncKind();
  };
  $("#channel-cancel").addEventListener("click", endEdit);
  $$(".edit-channel").forEach(b => b.addEventListener("click", () => {
    const row = b.closest("tr");
    endEdit();
    f.id.value = row.dataset.channel;
    f.name.value = row.dataset.name;
    f.kind.value = row.dataset.kind;
    f.kind.disabled = true;
    f.min_severity.value = row.dataset.minSeverity;
    syncKind();
    $("#channel-edit-note").hidden = false;
    $("#channel-cancel").hidden = false;
    $("#channel-form-head").textContent = "Edit the channel " + row.dataset.name;
    $("#channel-save").textContent = "Save the channel";
    form.scrollIntoView();
    f.name.focus();
  }));
  form.addEventListener("submit", async ev => {
    ev.preventDefault();
    const body = { name: f.name.value.trim(), min_severity: f.min_severity.value };
    if (!editing()) { body.kind = f.kind.value; body.config = config(); }
    else if (configInputs().some(i => i.value.trim())) body.config = config();
    $("#channel-save").disabled = true;
    try {
      if (editing()) await api("PATCH", "/api/v1/channels/" + encodeURIComponent(f.id.value), body);
      else await api("POST", "/api/v1/channels", body);
      location.reload();
    } catch (e) { formError(form, line, e); $("#channel-save").disabled = false; }
  });
  $$(".test-channel").forEach(b => b.addEventListener("click", async () => {
    const row = b.closest("tr"), out = $(".test-result", row);
    b.disabled = true;
    out.className = "test-result";
    out.textContent = "sending…";
    try {
      await api("POST", "/api/v1/channels/" + encodeURIComponent(row.dataset.channel) + "/test");
      out.className = "test-result result-ok";
      out.textContent = "✔ test sent";
    } catch (e) { out.className = "test-result error"; out.textContent = "✘ " + e.message; }
    // The console recorded the outcome as the channel's last delivery.
    try {
      const chans = (await api("GET", "/api/v1/channels")).data || [];
      const ch = chans.find(c => c.id === row.dataset.channel);
      if (ch) $(".channel-delivery", row).replaceChildren(...deliveryCell(ch.last_delivery));
    } catch (e) { /* the test's own answer is shown */ }
    b.disabled = false;
  }));
  $$(".remove-channel").forEach(b => b.addEventListener("click", async () => {
    const row = b.closest("tr");
    if (!confirm("Delete the channel " + row.dataset.name + "? Alerts are no longer sent through it.")) return;
    try { await api("DELETE", "/api/v1/channels/" + encodeURIComponent(row.dataset.channel)); location.reload(); }
    catch (e) { showError($("#channels-list-error"), e); }
  }));

  // MQTT integration accounts: the password is in POST's answer only, so
  // it is shown here and the page is not reloaded.
  const mf = $("#mqtt-user-form");
  mf.addEventListener("submit", async ev => {
    ev.preventDefault();
    const name = mf.elements.name.value.trim();
    try {
      const r = await api("POST", "/api/v1/mqtt-users", { name });
      formError(mf, $("#mqtt-user-error"), null);
      $("#mqtt-user-name").textContent = r.data.name;
      $("#mqtt-user-password").textContent = r.data.password;
      $("#mqtt-user-new").hidden = false;
      mf.reset();
      const tb = $("#mqtt-user-list tbody");
      if (!$("tr[data-mqtt-user]", tb)) tb.replaceChildren();
      const del = el("button", { type: "button", class: "small danger remove-mqtt-user", "data-name": r.data.name }, "Delete");
      del.addEventListener("click", () => removeMQTT(del));
      tb.prepend(el("tr", { "data-mqtt-user": r.data.name }, el("td", {}, r.data.name), el("td", {}, "just now"), el("td", {}, del)));
    } catch (e) { formError(mf, $("#mqtt-user-error"), e); }
  });
  async function removeMQTT(b) {
    const name = b.dataset.name;
    if (!confirm("Delete the MQTT account " + name + "? The integration using it is disconnected and cannot log in again.")) return;
    try {
      await api("DELETE", "/api/v1/mqtt-users/" + encodeURIComponent(name));
      b.closest("tr").remove();
      if ($("#mqtt-user-name").textContent === name) $("#mqtt-user-new").hidden = true;
      showError($("#mqtt-list-error"));
    } catch (e) { showError($("#mqtt-list-error"), e); }
  }
  $$(".remove-mqtt-user").forEach(b => b.addEventListener("click", () => removeMQTT(b)));

  // Settings: read from the API, saved whole.
  const sf = $("#console-settings"), save = $("#settings-save"), status = $("#settings-status");
  api("GET", "/api/v1/settings").then(r => {
    sf.elements.ha_discovery.checked = !!(r.data && r.data.ha_discovery);
    save.disabled = false;
    sf.dataset.loaded = "true";
  }).catch(e => showError($("#settings-error"), e));
  sf.addEventListener("submit", async ev => {
    ev.preventDefault();
    status.textContent = "";
    save.disabled = true;
    try {
      const r = await api("PUT", "/api/v1/settings", { ha_discovery: sf.elements.ha_discovery.checked });
      formError(sf, $("#settings-error"), null);
      status.className = "result-ok";
      status.textContent = "Saved: Home Assistant discovery " + (r.data.ha_discovery ? "on." : "off.");
    } catch (e) { formError(sf, $("#settings-error"), e); }
    save.disabled = false;
  });
}

// ---- audit log (admins): GET /api/v1/audit page by page (the next
// page's cursor in X-Next-Cursor), filtered by actor, object and time (the
// browser's time zone); the address keeps the filters.
function auditPage() {
  const form = $("#audit-filters"), f = form.elements, tb = $("#audit tbody"), older = $("#audit-older"), status = $("#audit-status"), line = $("#audit-error");
  const pageSize = 50;
  let cursor = "", shown = 0, seq = 0;
  const pad = n => String(n).padStart(2, "0");
  const localInput = iso => {
    const d = new Date(iso);
    if (isNaN(d)) return "";
    return d.getFullYear() + "-" + pad(d.getMonth() + 1) + "-" + pad(d.getDate()) + "T" + pad(d.getHours()) + ":" + pad(d.getMinutes()) + ":" + pad(d.getSeconds());
  };
  const params = new URLSearchParams(location.search);
  for (const k of ["since", "until"]) if (params.get(k)) f[k].value = localInput(params.get(k));
  const filters = () => {
    const q = new URLSearchParams();
    if (f.actor.value.trim()) q.set("actor", f.actor.value.trim());
    if (f.target.value.trim()) q.set("target", f.target.value.trim());
    for (const k of ["since", "until"]) if (f[k].value) q.set(k, new Date(f[k].value).toISOString());
    return q;
  };
  const filterBy = (name, value) => { f[name].value = value; load(false); };
  const row = e => {
    const t = el("td", {}, fmtTime(e.at));
    t.title = e.at;
    const actor = el("button", { type: "button", class: "tree-dir audit-actor", title: "only this actor's entries" }, e.actor || "—");
    actor.addEventListener("click", () => filterBy("actor", e.actor || ""));
    let target = el("span", { class: "sub" }, "—");
    if (e.target) {
      target = el("button", { type: "button", class: "tree-dir audit-target", title: "only this object's entries" }, e.target);
      target.addEventListener("click", () => filterBy("target", e.target));
    }
    const ok = e.status && e.status < 400;
    return el("tr", { "data-audit": e.id }, t, el("td", {}, actor, el("div", { class: "sub" }, e.actor_kind || "")),
      el("td", {}, el("code", {}, e.action || "")), el("td", {}, target),
      el("td", {}, e.status ? el("span", { class: "badge " + (ok ? "st-succeeded" : "st-failed") }, String(e.status)) : ""),
      el("td", { class: "sub" }, e.remote || ""), el("td", { class: "sub" }, e.detail || ""));
  };
  async function load(more) {
    const my = ++seq;
    const q = filters();
    if (!more) history.replaceState(null, "", "/audit" + (q.toString() ? "?" + q.toString() : ""));
    q.set("limit", String(pageSize));
    if (more && cursor) q.set("cursor", cursor);
    older.disabled = true;
    try {
      const r = await api("GET", "/api/v1/audit?" + q.toString());
      if (my !== seq) return; // a newer filter asked again
      formError(form, line, null);
      if (!more) { tb.replaceChildren(); shown = 0; }
      const list = r.data || [];
      tb.append(...list.map(row));
      shown += list.length;
      cursor = r.headers.get("X-Next-Cursor") || "";
      older.hidden = !cursor;
      status.textContent = shown === 0 ? "No entries match these filters." : shown + (shown === 1 ? " entry" : " entries") + (cursor ? " shown; older ones follow." : ", the oldest reached.");
    } catch (e) {
      if (my !== seq) return;
      formError(form, line, e);
      status.textContent = "";
    }
    older.disabled = false;
  }
  form.addEventListener("submit", ev => { ev.preventDefault(); load(false); });
  $("#audit-clear").addEventListener("click", () => { form.reset(); for (const k of ["actor", "target", "since", "until"]) f[k].value = ""; load(false); });
  older.addEventListener("click", () => load(true));
  load(false);
}
