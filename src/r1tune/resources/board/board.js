// r1tune board: the page's behaviour. No framework and nothing fetched from elsewhere: the board works offline.
// Every change is a fetch with the X-CSRF-Token the page was served with; live views are server-sent events.
"use strict";

const BOOT = JSON.parse(document.getElementById("boot").textContent);
const S = BOOT.strings;
const $ = (sel, root = document) => root.querySelector(sel);
const $$ = (sel, root = document) => Array.from(root.querySelectorAll(sel));

// ---------------------------------------------------------------- requests

async function api(method, url, body) {
  const init = { method, headers: { "X-CSRF-Token": BOOT.csrf } };
  if (body !== undefined) {
    init.headers["Content-Type"] = "application/json";
    init.body = JSON.stringify(body);
  }
  const response = await fetch(url, init);
  const text = await response.text();
  let data = null;
  try { data = text ? JSON.parse(text) : null; } catch (e) { data = { error: text.slice(0, 300) }; }
  if (!response.ok) {
    const message = (data && (data.error || data.detail)) || response.statusText;
    throw new Error(response.status === 403 && /csrf/.test(message) ? S.csrf_reload : message);
  }
  return data;
}

function say(id, text, isError = false) {
  const el = document.getElementById(id);
  el.textContent = text || "";
  el.classList.toggle("error", isError);
}

function formValues(form) {
  const values = {};
  for (const el of form.elements) {
    if (!el.name) continue;
    if (el.type === "checkbox") values[el.name] = el.checked;
    else if (el.value !== "") values[el.name] = el.value;
  }
  return values;
}

async function guarded(msgId, work) {
  say(msgId, S.working);
  try {
    const result = await work();
    if (document.getElementById(msgId).textContent === S.working) say(msgId, "");
    return result;
  } catch (e) {
    say(msgId, `${S.error}: ${e.message}`, true);
    return null;
  }
}

// ---------------------------------------------------------------- tabs and language

function showTab(name) {
  for (const panel of $$(".panel")) panel.hidden = panel.id !== `panel-${name}`;
  for (const button of $$("#tabs button")) button.classList.toggle("active", button.dataset.tab === name);
  history.replaceState(null, "", `#${name}`);
  if (name === "runs" || name === "evaluate" || name === "export" || name === "chat") refreshRuns();
}

$$("#tabs button").forEach((b) => b.addEventListener("click", () => showTab(b.dataset.tab)));
$("#lang-switch").addEventListener("click", (e) => {
  document.cookie = `lang=${e.target.dataset.lang}; path=/; samesite=strict; max-age=31536000`;
  location.reload();
});

// ---------------------------------------------------------------- choices shared by the forms

let RUNS = [];

function fill(select, values, keep = true) {
  const previous = select.value;
  const optional = select.classList.contains("optional");
  select.replaceChildren();
  if (optional) select.append(new Option(S.none, ""));
  for (const v of values) select.append(typeof v === "string" ? new Option(v, v) : new Option(v.label, v.value));
  if (keep && [...select.options].some((o) => o.value === previous)) select.value = previous;
}

async function refreshFiles() {
  const files = await api("GET", "/api/files");
  fill($("#data-file"), files.data);
  fill($("#prepare-config"), files.configs);
  $$("select.data-files").forEach((s) => fill(s, files.data));
  const models = await api("GET", "/api/models");
  $$("select.models").forEach((s) => fill(s, models.models));
}

fill($("#train-method"), BOOT.methods);
if (!BOOT.gguf) $("#export-gguf").remove();

// ---------------------------------------------------------------- data

$("#data-upload").addEventListener("change", async (e) => {
  const file = e.target.files[0];
  if (!file) return;
  await guarded("data-msg", async () => {
    const response = await fetch(`/api/upload?name=${encodeURIComponent(file.name)}`,
      { method: "PUT", headers: { "X-CSRF-Token": BOOT.csrf, "Content-Type": "application/octet-stream" }, body: file });
    const data = await response.json();
    if (!response.ok) throw new Error(data.error);
    await refreshFiles();
    $("#data-file").value = data.file;
    say("data-msg", `${data.file} (${data.bytes} B)`);
    await preview();
  });
  e.target.value = "";
});

async function preview() {
  const file = $("#data-file").value;
  if (!file) return;
  const data = await guarded("data-msg", () => api("GET", `/api/preview?file=${encodeURIComponent(file)}`));
  if (!data) return;
  const box = $("#data-records");
  box.replaceChildren();
  for (const record of data.records) {
    const pre = document.createElement("pre");
    pre.textContent = JSON.stringify(record, null, 1);
    box.append(pre);
  }
  say("data-msg", `${data.records.length} ${S.data_records}` +
    (data.problems.length ? `; ${data.problems.length} ${S.data_problems}: ${data.problems.join(" | ")}` : ""),
    data.problems.length > 0);
}
$("#data-preview").addEventListener("click", preview);

$("#check-run").addEventListener("click", () => guarded("check-msg", async () => {
  const job = await api("POST", "/api/check", { file: $("#data-file").value, labels: $("#check-labels").value });
  $("#check-report").textContent = "";
  say("check-msg", `${S.launched}: ${job.name}`);
  const info = await waitForJob(job.name, (i) => say("check-msg", `${job.name}: ${statusWord(i.status)}`));
  const reportName = info.reports.includes("report.md") ? "report.md" : null;
  if (reportName) {
    const response = await fetch(`/api/run/file?name=${encodeURIComponent(job.name)}&file=${reportName}`);
    $("#check-report").textContent = await response.text();
  } else if (info.reason) say("check-msg", `${job.name}: ${info.reason}`, true);
}));

$("#prepare-run").addEventListener("click", () => guarded("prepare-msg", async () => {
  const job = await api("POST", "/api/prepare", { config: $("#prepare-config").value });
  const bar = $("#prepare-progress");
  bar.hidden = false;
  bar.value = 0;
  const info = await waitForJob(job.name, (i) => {
    if (i.progress) bar.value = i.progress.fraction;
    say("prepare-msg", `${job.name}: ${statusWord(i.status)}` + (i.progress ? ` (${i.progress.done.join(", ")})` : ""));
  });
  if (info.status === "finished") bar.value = 1;
  if (info.reason) say("prepare-msg", `${job.name}: ${info.reason}`, true);
  refreshFiles();
}));

async function waitForJob(name, onChange) {
  for (;;) {
    const info = await api("GET", `/api/run?name=${encodeURIComponent(name)}`);
    onChange(info);
    if (info.status !== "running" && info.status !== "stopping") return info;
    await new Promise((r) => setTimeout(r, BOOT.poll_s * 1000));
  }
}

// ---------------------------------------------------------------- train

const trainForm = $("#train-form");
function showKindFields() {
  const rl = trainForm.elements.kind.value === "grpo";
  $$(".rl", trainForm).forEach((el) => { el.hidden = !rl; });
  $$(".sft", trainForm).forEach((el) => { el.hidden = rl; });
}
trainForm.elements.kind.addEventListener("change", showKindFields);
showKindFields();

function trainValues() {
  const values = formValues(trainForm);
  for (const el of trainForm.elements) if (el.name && el.closest("label")?.hidden) delete values[el.name];
  return values;
}

function gib(bytes) { return `${(bytes / 2 ** 30).toFixed(2)} GiB`; }

function showAdvice(report) {
  const box = $("#train-advice");
  box.replaceChildren();
  const h = document.createElement("h3");
  h.textContent = `${S.advisor_title} · ${S.advisor_available} ${gib(report.device_memory_bytes)}`;
  box.append(h);
  const table = document.createElement("table");
  table.className = "advice";
  for (const s of report.recommendations) {
    const tr = table.insertRow();
    const cells = [s.method, s.lora_r ? `r=${s.lora_r}` : "", `lr=${s.lr}`, `batch=${s.batch_size}×${s.grad_accum}`,
      `len=${s.max_length}`, `${S.advisor_memory} ${gib(s.memory_bytes)}`, s.fits ? S.advisor_fits : S.advisor_no_fit];
    for (const c of cells) tr.insertCell().textContent = c;
    const use = document.createElement("button");
    use.type = "button";
    use.textContent = S.train_apply;
    use.addEventListener("click", () => {
      const f = trainForm.elements;
      f.method.value = s.method; f.lr.value = s.lr; f.batch_size.value = s.batch_size;
      f.grad_accum.value = s.grad_accum; f.max_length.value = s.max_length; f.lora_r.value = s.lora_r || "";
    });
    tr.insertCell().append(use);
    tr.classList.toggle("no-fit", !s.fits);
  }
  box.append(table);
  for (const reason of report.reasons || []) {
    const p = document.createElement("p");
    p.className = "hint";
    p.textContent = reason;
    box.append(p);
  }
}

for (const [id, estimateOnly] of [["#train-advise", false], ["#train-estimate", true]]) {
  $(id).addEventListener("click", () => guarded("train-msg", async () => {
    say("train-msg", S.advisor_running);
    const report = await api("POST", "/api/advise", { ...trainValues(), estimate_only: estimateOnly });
    showAdvice(report);
    say("train-msg", "");
  }));
}

$("#train-preview").addEventListener("click", () => guarded("train-msg", async () => {
  const plan = await api("POST", "/api/train/preview", trainValues());
  const pre = $("#train-yaml");
  pre.hidden = false;
  pre.textContent = `# ${plan.command}\n${plan.yaml}`;
}));

$("#train-launch").addEventListener("click", () => guarded("train-msg", async () => {
  const job = await api("POST", "/api/train", trainValues());
  say("train-msg", `${S.launched}: ${job.name}`);
  showTab("runs");
  openRun(job.name);
}));

// ---------------------------------------------------------------- runs

function statusWord(status) { return S[`status_${status}`] || status; }
function when(seconds) { return seconds ? new Date(seconds * 1000).toLocaleString() : ""; }
function num(x) { return typeof x === "number" ? (Math.abs(x) >= 1e-3 || x === 0 ? x.toFixed(4) : x.toExponential(2)) : ""; }

async function refreshRuns() {
  let data;
  try { data = await api("GET", "/api/runs"); } catch (e) { return; }
  RUNS = data.runs;
  const body = $("#runs-table tbody");
  body.replaceChildren();
  for (const run of RUNS) {
    const tr = body.insertRow();
    tr.dataset.run = run.name;
    const step = run.step == null ? "" : run.total_steps ? `${run.step}/${run.total_steps}` : `${run.step}`;
    const cells = [run.name, run.kind, statusWord(run.status), step, num(run.loss ?? run.reward), when(run.started)];
    cells.forEach((c, i) => {
      const td = tr.insertCell();
      td.textContent = c;
      if (i === 2) td.className = `status ${run.status}`;
    });
    const open = document.createElement("button");
    open.type = "button";
    open.textContent = S.runs_open;
    open.addEventListener("click", () => openRun(run.name));
    tr.insertCell().append(open);
  }
  $("#runs-none").hidden = RUNS.length > 0;
  const trained = RUNS.filter((r) => r.chat).map((r) => r.name);
  $$("select.trained").forEach((s) => fill(s, trained));
  renderJobs("#eval-jobs", RUNS.filter((r) => r.kind === "evaluate"), ["report.html"]);
  renderJobs("#export-jobs", RUNS.filter((r) => ["merge", "int8", "gguf"].includes(r.kind)),
    ["model/merge_report.json", "model/quantize_report.json", "gguf/gguf_report.json"]);
}
$("#runs-refresh").addEventListener("click", refreshRuns);

function reportLink(name, file) {
  const a = document.createElement("a");
  a.href = `/api/run/file?name=${encodeURIComponent(name)}&file=${encodeURIComponent(file)}`;
  a.target = "_blank";
  a.rel = "noopener";
  a.textContent = file;
  return a;
}

function renderJobs(listId, runs, reports) {
  const list = $(listId);
  list.replaceChildren();
  for (const run of runs) {
    const li = document.createElement("li");
    li.textContent = `${run.name} · ${statusWord(run.status)} `;
    li.className = `status ${run.status}`;
    if (run.status === "finished") for (const r of reports) li.append(reportLink(run.name, r), " ");
    list.append(li);
  }
}

let runEvents = null;
let currentRun = null;
let points = [];

function openRun(name) {
  if (runEvents) runEvents.close();
  currentRun = name;
  points = [];
  $("#run-detail").hidden = false;
  $("#run-name").textContent = name;
  drawCharts();
  api("GET", `/api/run?name=${encodeURIComponent(name)}`).then(showRunInfo).catch(() => {});
  runEvents = new EventSource(`/api/run/events?name=${encodeURIComponent(name)}`);
  runEvents.addEventListener("metrics", (e) => {
    const data = JSON.parse(e.data);
    if (data.reset) points = [];
    points.push(...data.rows);
    drawCharts();
  });
  runEvents.addEventListener("status", (e) => showStatus(JSON.parse(e.data)));
  runEvents.addEventListener("log", (e) => {
    const pre = $("#run-log");
    pre.textContent = JSON.parse(e.data).text;
    pre.scrollTop = pre.scrollHeight;
  });
  runEvents.addEventListener("end", () => {
    runEvents.close();
    runEvents = null;
    api("GET", `/api/run?name=${encodeURIComponent(name)}`).then(showRunInfo).catch(() => {});
    refreshRuns();
  });
}

function showStatus(run) {
  const status = $("#run-status");
  status.textContent = statusWord(run.status);
  status.className = `status ${run.status}`;
  status.dataset.status = run.status;
  $("#run-step").textContent = run.step == null ? "" : `${S.runs_step} ${run.step}${run.total_steps ? "/" + run.total_steps : ""}`;
  $("#run-stop").hidden = !["running"].includes(run.status);
  $("#run-resume").hidden = !(run.resumable && ["stopped", "failed"].includes(run.status));
}

function showRunInfo(info) {
  if (info.name !== currentRun) return;
  showStatus(info);
  $("#run-config").textContent = info.config || "";
  $("#run-command").textContent = info.command ? `r1tune ${info.command}` : "";
  $("#run-reason").textContent = info.reason ? `${S.run_reason}: ${info.reason}` : "";
  if (!runEvents) $("#run-log").textContent = info.log;
  const list = $("#run-reports");
  list.replaceChildren();
  for (const file of info.reports) {
    const li = document.createElement("li");
    li.append(reportLink(info.name, file));
    list.append(li);
  }
}

$("#run-stop").addEventListener("click", () => guarded("train-msg", async () => {
  await api("POST", "/api/run/stop", { name: currentRun });
  openRun(currentRun);
}));
$("#run-resume").addEventListener("click", () => guarded("train-msg", async () => {
  await api("POST", "/api/run/resume", { name: currentRun });
  openRun(currentRun);
}));

// ---------------------------------------------------------------- charts (SVG, drawn from metrics rows)

const SVG = "http://www.w3.org/2000/svg";
const CHARTS = {
  loss: [["train", "loss", "#2563eb"], ["eval", "loss", "#dc2626"]],
  lr: [["train", "lr", "#059669"]],
  reward: [["train", "reward", "#7c3aed"]],
  grad_norm: [["train", "grad_norm", "#d97706"]],
};

function svgEl(name, attrs, text) {
  const el = document.createElementNS(SVG, name);
  for (const [k, v] of Object.entries(attrs)) el.setAttribute(k, v);
  if (text !== undefined) el.textContent = text;
  return el;
}

function drawCharts() {
  for (const [chart, series] of Object.entries(CHARTS)) {
    const svg = document.getElementById(`chart-${chart}`);
    const lines = series.map(([split, key, color]) => ({
      split, color,
      pts: points.filter((r) => (r.split || "train") === split && typeof r[key] === "number" && isFinite(r[key]))
        .map((r) => [r.step, r[key]]),
    }));
    const all = lines.flatMap((l) => l.pts);
    svg.replaceChildren();
    svg.dataset.points = String(all.length);
    svg.closest("figure").hidden = chart !== "loss" && all.length === 0;
    if (all.length === 0) {
      svg.append(svgEl("text", { x: 210, y: 100, "text-anchor": "middle", class: "empty" }, S.chart_no_points));
      continue;
    }
    const [x0, x1] = [Math.min(...all.map((p) => p[0])), Math.max(...all.map((p) => p[0]))];
    let [y0, y1] = [Math.min(...all.map((p) => p[1])), Math.max(...all.map((p) => p[1]))];
    if (y1 === y0) { y0 -= Math.abs(y0) * 0.1 || 1; y1 += Math.abs(y1) * 0.1 || 1; }
    const L = 56, R = 410, T = 10, B = 176;
    const sx = (x) => L + (x1 === x0 ? (R - L) / 2 : ((x - x0) / (x1 - x0)) * (R - L));
    const sy = (y) => B - ((y - y0) / (y1 - y0)) * (B - T);
    svg.append(svgEl("line", { x1: L, y1: B, x2: R, y2: B, class: "axis" }), svgEl("line", { x1: L, y1: T, x2: L, y2: B, class: "axis" }));
    for (const y of [y0, (y0 + y1) / 2, y1]) svg.append(svgEl("text", { x: L - 4, y: sy(y) + 4, "text-anchor": "end", class: "tick" }, num(y)));
    for (const x of [x0, x1]) svg.append(svgEl("text", { x: sx(x), y: B + 16, "text-anchor": "middle", class: "tick" }, String(x)));
    for (const line of lines) {
      if (!line.pts.length) continue;
      const d = line.pts.map((p, i) => `${i ? "L" : "M"}${sx(p[0]).toFixed(1)},${sy(p[1]).toFixed(1)}`).join("");
      svg.append(svgEl("path", { d, fill: "none", stroke: line.color, "stroke-width": 2, class: `series ${line.split}` }));
      for (const p of line.pts.length <= 60 ? line.pts : []) svg.append(svgEl("circle", { cx: sx(p[0]), cy: sy(p[1]), r: 2.5, fill: line.color }));
    }
    if (lines.filter((l) => l.pts.length).length > 1) {
      lines.forEach((l, i) => svg.append(svgEl("text", { x: R - 4, y: T + 12 + i * 14, "text-anchor": "end", fill: l.color, class: "legend" }, l.split)));
    }
  }
}

// ---------------------------------------------------------------- evaluate and export

$("#eval-launch").addEventListener("click", () => guarded("eval-msg", async () => {
  const job = await api("POST", "/api/evaluate", formValues($("#eval-form")));
  say("eval-msg", `${S.launched}: ${job.name}`);
  refreshRuns();
}));

$("#export-launch").addEventListener("click", () => guarded("export-msg", async () => {
  const job = await api("POST", "/api/export", formValues($("#export-form")));
  say("export-msg", `${S.launched}: ${job.name}`);
  refreshRuns();
}));

// ---------------------------------------------------------------- chat

let history_ = [];
let chatAbort = null;
$("#chat-temperature").value = BOOT.sampling.temperature;
$("#chat-top-p").value = BOOT.sampling.top_p;
$("#chat-max-tokens").value = BOOT.chat_max_tokens;

function bubble(role) {
  const div = document.createElement("div");
  div.className = `message ${role}`;
  $("#chat-log").append(div);
  return div;
}

async function send() {
  const text = $("#chat-input").value.trim();
  if (!text || chatAbort) return;
  $("#chat-input").value = "";
  bubble("user").textContent = text;
  history_.push({ role: "user", content: text });
  const reply = bubble("assistant");
  const details = document.createElement("details");
  details.className = "reasoning";
  const summary = document.createElement("summary");
  summary.textContent = S.chat_loading;
  const thought = document.createElement("div");
  thought.className = "reasoning-text";
  details.append(summary, thought);
  const answer = document.createElement("div");
  answer.className = "answer";
  reply.append(details, answer);
  const system = $("#chat-system").value.trim();
  const messages = system ? [{ role: "system", content: system }, ...history_] : [...history_];
  chatAbort = new AbortController();
  let finish = null;
  say("chat-msg", "");
  try {
    const response = await fetch("/api/chat", {
      method: "POST", signal: chatAbort.signal,
      headers: { "Content-Type": "application/json", "X-CSRF-Token": BOOT.csrf },
      body: JSON.stringify({ run: $("#chat-run").value, messages, temperature: Number($("#chat-temperature").value),
        top_p: Number($("#chat-top-p").value), max_tokens: Number($("#chat-max-tokens").value) }),
    });
    if (!response.ok) throw new Error((await response.json()).error);
    const reader = response.body.getReader();
    const decoder = new TextDecoder();
    let buffer = "";
    for (;;) {
      const { value, done } = await reader.read();
      if (done) break;
      buffer += decoder.decode(value, { stream: true });
      let cut;
      while ((cut = buffer.indexOf("\n\n")) >= 0) {
        const block = buffer.slice(0, cut);
        buffer = buffer.slice(cut + 2);
        const event = /^event: (.*)$/m.exec(block)?.[1];
        const data = JSON.parse(/^data: (.*)$/m.exec(block)?.[1] || "{}");
        if (event === "reasoning") thought.textContent += data.text;
        else if (event === "answer") answer.textContent += data.text;
        else if (event === "finish") finish = data.text;
        else if (event === "error") throw new Error(data.text);
        summary.textContent = `${S.chat_reasoning} (${thought.textContent.length} ${S.chat_chars})`;
      }
    }
  } catch (e) {
    if (e.name !== "AbortError") say("chat-msg", `${S.error}: ${e.message}`, true);
    finish = finish || "cancelled";
  } finally {
    chatAbort = null;
  }
  summary.textContent = `${S.chat_reasoning} (${thought.textContent.length} ${S.chat_chars})`;
  // history keeps the answer only: the R1 template drops earlier turns' reasoning anyway
  history_.push({ role: "assistant", content: answer.textContent });
  if (!answer.textContent) answer.textContent = S.chat_answer_missing;
  if (finish === "length") answer.append(` ${S.chat_cut}`);
  reply.dataset.finish = finish || "";
}

$("#chat-send").addEventListener("click", send);
$("#chat-input").addEventListener("keydown", (e) => {
  if (e.key === "Enter" && !e.shiftKey) { e.preventDefault(); send(); }
});
$("#chat-stop").addEventListener("click", () => chatAbort && chatAbort.abort());
$("#chat-reset").addEventListener("click", () => {
  if (chatAbort) chatAbort.abort();
  history_ = [];
  $("#chat-log").replaceChildren();
});

// ---------------------------------------------------------------- start

refreshFiles().catch((e) => say("data-msg", `${S.error}: ${e.message}`, true));
refreshRuns();
setInterval(() => { if (!$("#panel-runs").hidden || !$("#panel-evaluate").hidden || !$("#panel-export").hidden) refreshRuns(); }, 3000);
showTab(location.hash.slice(1) || "data");
