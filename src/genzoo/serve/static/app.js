// genzoo serve: the page. Plain JavaScript, no library, no request that leaves this server.
"use strict";

const $ = (id) => document.getElementById(id);
const state = { runs: [], pixels: null, jobs: {}, frames: [] };
// Timings the browser test reads (milliseconds): page ready, and each answer of classify and denoise.
window.genzooTimings = { ready: null, classify: [], denoise: [], reconstruct: [] };

function runPath(name) { return name.split("/").map(encodeURIComponent).join("/"); }

async function api(method, url, body) {
  const options = { method };
  if (body instanceof FormData) options.body = body;
  else if (body !== undefined) {
    options.body = JSON.stringify(body);
    options.headers = { "Content-Type": "application/json" };
  }
  const response = await fetch(url, options);
  const data = await response.json().catch(() => ({ error: `HTTP ${response.status}` }));
  if (!response.ok) throw new Error(data.error || `HTTP ${response.status}`);
  return data;
}

function image(src, cls, alt) {
  const img = document.createElement("img");
  img.src = src; img.className = cls; img.alt = alt || "";
  return img;
}

function figure(src, caption, cls) {
  const fig = document.createElement("figure");
  fig.appendChild(image(src, cls || "digit", caption));
  const cap = document.createElement("figcaption");
  cap.textContent = caption;
  fig.appendChild(cap);
  return fig;
}

function guarded(errorId, fn) {
  return async (...args) => {
    $(errorId).textContent = "";
    try { await fn(...args); } catch (e) { $(errorId).textContent = e.message; }
  };
}

function needDigit() {
  if (!state.pixels) throw new Error("draw a digit (or drop an image) first");
  return state.pixels;
}

// ------------------------------------------------------------------ runs

function fill(selectId, runs) {
  const select = $(selectId);
  const before = select.value;
  select.innerHTML = "";
  for (const run of runs) {
    const option = document.createElement("option");
    option.value = run.name;
    option.textContent = `${run.name} (${run.model}${run.weights ? "" : ", no weights yet"})`;
    select.appendChild(option);
  }
  if (runs.some((r) => r.name === before)) select.value = before;
  const section = select.closest("section");
  section.querySelectorAll("button").forEach((b) => { b.disabled = runs.length === 0; });
  if (runs.length === 0 && select.options.length === 0) {
    const option = document.createElement("option");
    option.textContent = "no run of this kind here";
    select.appendChild(option);
  }
}

async function loadRuns() {
  const data = await api("GET", "/api/runs");
  state.runs = data.runs.filter((r) => !r.error);
  $("root").textContent = data.root;
  $("run-count").textContent = data.runs.length;
  const has = (key) => state.runs.filter((r) => r[key]);
  fill("denoise-run", has("denoise"));
  fill("complete-run", has("complete"));
  fill("reconstruct-run", has("reconstruct"));
  fill("edit-run", has("edit"));
  fill("sample-run", has("sample"));
  fill("walk-run", has("interpolate"));
  fill("report-run", data.runs);
  $("edit-none").hidden = has("edit").length > 0;
  $("edit-controls").hidden = has("edit").length === 0;
  onSampleRun();
}

function selectedRun(selectId) {
  return state.runs.find((r) => r.name === $(selectId).value);
}

// ------------------------------------------------------------------ drawing

const canvas = $("canvas");
const ctx = canvas.getContext("2d");
function clearCanvas() {
  ctx.fillStyle = "#000"; ctx.fillRect(0, 0, canvas.width, canvas.height);
  state.pixels = null;
  $("input28").removeAttribute("src");
  drawBars(null);
}
clearCanvas();
let drawing = false;
let last = null;
function point(e) {
  const box = canvas.getBoundingClientRect();
  return [(e.clientX - box.left) * canvas.width / box.width, (e.clientY - box.top) * canvas.height / box.height];
}
canvas.addEventListener("pointerdown", (e) => {
  drawing = true; last = point(e);
  canvas.setPointerCapture(e.pointerId);
  ctx.fillStyle = "#fff"; ctx.beginPath(); ctx.arc(last[0], last[1], 9, 0, 2 * Math.PI); ctx.fill();
});
canvas.addEventListener("pointermove", (e) => {
  if (!drawing) return;
  const p = point(e);
  ctx.strokeStyle = "#fff"; ctx.lineWidth = 18; ctx.lineCap = "round"; ctx.lineJoin = "round";
  ctx.beginPath(); ctx.moveTo(last[0], last[1]); ctx.lineTo(p[0], p[1]); ctx.stroke();
  last = p;
});
function endStroke() {
  if (!drawing) return;
  drawing = false;
  canvas.toBlob((blob) => sendDigit(blob, "canvas.png"), "image/png");
}
canvas.addEventListener("pointerup", endStroke);
canvas.addEventListener("pointercancel", endStroke);
$("clear").addEventListener("click", clearCanvas);

const sendDigit = guarded("draw-error", async (blob, filename) => {
  const form = new FormData();
  form.append("image", blob, filename);
  const start = performance.now();
  const data = await api("POST", "/api/digit", form);
  window.genzooTimings.classify.push(performance.now() - start);
  state.pixels = data.pixels;
  $("input28").src = data.image;
  drawBars(data.probabilities);
});

$("file").addEventListener("change", (e) => { if (e.target.files[0]) sendDigit(e.target.files[0], e.target.files[0].name); });
canvas.addEventListener("dragover", (e) => { e.preventDefault(); canvas.classList.add("dragover"); });
canvas.addEventListener("dragleave", () => canvas.classList.remove("dragover"));
canvas.addEventListener("drop", (e) => {
  e.preventDefault(); canvas.classList.remove("dragover");
  const file = e.dataTransfer.files[0];
  if (file) sendDigit(file, file.name);
});

function drawBars(probabilities) {
  const bars = $("bars");
  bars.innerHTML = "";
  const top = probabilities ? probabilities.indexOf(Math.max(...probabilities)) : -1;
  for (let k = 0; k < 10; k++) {
    const bar = document.createElement("div");
    bar.className = "bar" + (k === top ? " top" : "");
    bar.style.height = probabilities ? `${Math.max(1, 140 * probabilities[k])}px` : "1px";
    bar.title = probabilities ? `${k}: ${(100 * probabilities[k]).toFixed(1)}%` : `${k}`;
    const label = document.createElement("span");
    label.textContent = k;
    bar.appendChild(label);
    bars.appendChild(bar);
  }
  $("top-class").textContent = top >= 0 ? top : "–";
  $("top-prob").textContent = top >= 0 ? `(${(100 * probabilities[top]).toFixed(1)}%)` : "";
}

function topOf(probabilities) {
  const k = probabilities.indexOf(Math.max(...probabilities));
  return `evaluator: ${k} (${(100 * probabilities[k]).toFixed(0)}%)`;
}

// ------------------------------------------------------------------ denoise, reconstruct

for (const [input, label] of [["noise-level", "noise-level-value"], ["image-guidance", "image-guidance-value"],
  ["text-guidance", "text-guidance-value"], ["guidance", "guidance-value"]]) {
  $(input).addEventListener("input", () => { $(label).textContent = $(input).value; });
}

$("denoise").addEventListener("click", guarded("denoise-error", async () => {
  const body = { pixels: needDigit(), noise: $("noise-kind").value, level: Number($("noise-level").value),
    hide: $("denoise-hide").value, seed: 0 };
  const start = performance.now();
  const data = await api("POST", `/api/runs/${runPath($("denoise-run").value)}/denoise`, body);
  window.genzooTimings.denoise.push(performance.now() - start);
  const out = $("denoise-out");
  out.innerHTML = "";
  out.appendChild(figure($("input28").src, "your digit"));
  out.appendChild(figure(data.noisy, `corrupted: PSNR ${data.psnr_noisy.toFixed(1)} dB`));
  out.appendChild(figure(data.denoised, `denoised: PSNR ${data.psnr_denoised.toFixed(1)} dB; ${topOf(data.probabilities)}`));
}));

$("reconstruct").addEventListener("click", guarded("reconstruct-error", async () => {
  const start = performance.now();
  const data = await api("POST", `/api/runs/${runPath($("reconstruct-run").value)}/reconstruct`, { pixels: needDigit() });
  window.genzooTimings.reconstruct.push(performance.now() - start);
  const out = $("reconstruct-out");
  out.innerHTML = "";
  out.appendChild(figure($("input28").src, "your digit"));
  out.appendChild(figure(data.image, `reconstruction; ${topOf(data.probabilities)}`));
  if (data.latent) {
    const wrap = document.createElement("figure");
    const box = document.createElement("div");
    box.className = "latent";
    box.appendChild(image(data.latent.map, "", "the decoder over the 2-D latent space"));
    const dot = document.createElement("div");
    dot.className = "dot";
    dot.style.left = `${100 * data.latent.x}%`; dot.style.top = `${100 * data.latent.y}%`;
    box.appendChild(dot);
    wrap.appendChild(box);
    const cap = document.createElement("figcaption");
    cap.textContent = `your digit's code z = (${data.latent.z.map((v) => v.toFixed(2)).join(", ")}) on the decoded ` +
      "latent map (Gaussian quantiles 0.05..0.95)";
    wrap.appendChild(cap);
    out.appendChild(wrap);
  }
}));

// ------------------------------------------------------------------ jobs

function waitForJob(job, outId, render) {
  state.jobs[job.id] = { outId, render };
  const out = $(outId);
  out.innerHTML = "";
  const line = document.createElement("div");
  line.id = `job-${job.id}`;
  line.innerHTML = `<progress max="1"></progress> <span class="meta"></span> <button>Cancel</button>`;
  line.querySelector("button").addEventListener("click", () => api("POST", `/api/jobs/${job.id}/cancel`));
  out.appendChild(line);
  showJob(job);
  pollJobs();
}

function describe(job) {
  if (job.status === "queued") return `waiting, place ${job.queue_position} in line`;
  if (job.status === "running") return job.progress == null ? "running" : `running, ${Math.round(100 * job.progress)}%`;
  if (job.status === "error") return `error: ${job.error}`;
  return `${job.status} in ${job.seconds.toFixed(1)} s`;
}

function showJob(job) {
  const mine = state.jobs[job.id];
  if (!mine) return;
  const line = $(`job-${job.id}`);
  if (line) {
    const bar = line.querySelector("progress");
    if (job.progress != null) bar.value = job.progress; else bar.removeAttribute("value");
    line.querySelector("span").textContent = describe(job);
  }
  if (["done", "error", "cancelled"].includes(job.status)) {
    delete state.jobs[job.id];
    if (line) line.querySelector("button").remove();
    if (job.status === "done") mine.render(job.result, job);
  }
}

let polling = false;
async function pollJobs() {
  if (polling) return;
  polling = true;
  try {
    while (true) {
      const data = await api("GET", "/api/jobs");
      renderQueue(data.jobs);
      for (const id of Object.keys(state.jobs)) showJob(await api("GET", `/api/jobs/${id}`));
      if (Object.keys(state.jobs).length === 0 && !data.jobs.some((j) => ["queued", "running"].includes(j.status))) break;
      await new Promise((r) => setTimeout(r, 400));
    }
  } finally { polling = false; }
}

function renderQueue(jobs) {
  const list = $("jobs");
  list.innerHTML = "";
  for (const job of jobs.slice(0, 15)) {
    const item = document.createElement("li");
    item.textContent = `${job.kind} on ${job.run}: ${describe(job)}`;
    if (["queued", "running"].includes(job.status)) {
      const cancel = document.createElement("button");
      cancel.textContent = "Cancel";
      cancel.addEventListener("click", () => api("POST", `/api/jobs/${job.id}/cancel`).then(pollJobs));
      item.append(" ", cancel);
    }
    list.appendChild(item);
  }
}

// ------------------------------------------------------------------ complete, edit, sample

$("complete").addEventListener("click", guarded("complete-error", async () => {
  const body = { pixels: needDigit(), hide: $("complete-hide").value, completions: Number($("completions").value), seed: 0 };
  const data = await api("POST", `/api/runs/${runPath($("complete-run").value)}/complete`, body);
  waitForJob(data.job, "complete-out", (result) => {
    const out = $("complete-out");
    out.appendChild(figure(result.visible, "what the model sees (hidden: grey)"));
    result.completions.forEach((src, i) => out.appendChild(figure(src, `completion ${i + 1}; ${topOf(result.probabilities[i])}`)));
  });
}));

$("edit").addEventListener("click", guarded("edit-error", async () => {
  const body = { pixels: needDigit(), instruction: $("instruction").value, image_guidance: Number($("image-guidance").value),
    text_guidance: Number($("text-guidance").value), steps: Number($("edit-steps").value), seed: 0 };
  const data = await api("POST", `/api/runs/${runPath($("edit-run").value)}/edit`, body);
  waitForJob(data.job, "edit-out", (result) => {
    const out = $("edit-out");
    out.appendChild(figure($("input28").src, "your digit"));
    out.appendChild(figure(result.image, `"${body.instruction}"; ${topOf(result.probabilities)}`));
  });
}));

function onSampleRun() {
  const run = selectedRun("sample-run");
  const label = $("sample-label");
  if (label.options.length === 1) for (let k = 0; k < 10; k++) label.add(new Option(String(k), String(k)));
  label.disabled = !(run && run.conditional);
  if (label.disabled) label.value = "";
  const diffusion = Boolean(run && run.sample_options.includes("guidance"));
  document.querySelectorAll("#sample-section .diffusion").forEach((el) => { el.hidden = !diffusion; });
  if (diffusion) {
    $("steps").max = run.max_steps;
    $("steps").value = Math.min(run.default_steps, run.max_steps);
    $("guidance").value = run.default_guidance; $("guidance-value").textContent = run.default_guidance;
  }
}
$("sample-run").addEventListener("change", onSampleRun);

$("sample").addEventListener("click", guarded("sample-error", async () => {
  const run = selectedRun("sample-run");
  const body = { n: Number($("sample-n").value), seed: Number($("sample-seed").value) };
  if (!$("sample-label").disabled && $("sample-label").value !== "") body.label = Number($("sample-label").value);
  if (run && run.sample_options.includes("guidance")) {
    body.guidance = Number($("guidance").value); body.steps = Number($("steps").value);
  }
  const data = await api("POST", `/api/runs/${runPath(run.name)}/sample`, body);
  const show = (result) => $("sample-out").appendChild(figure(result.image, `${run.name}: ${body.n} samples`, "grid"));
  if (data.job) waitForJob(data.job, "sample-out", show);
  else { $("sample-out").innerHTML = ""; show(data); }
}));

// ------------------------------------------------------------------ latent walk

$("walk").addEventListener("click", guarded("walk-error", async () => {
  const run = selectedRun("walk-run");
  const body = { steps: 11, seed: Number($("walk-seed").value) };
  if (run.walk_from_digit && state.pixels) body.pixels = state.pixels;
  if (run.conditional) body.label = state.pixels ? Number($("top-class").textContent) || 0 : 0;
  const data = await api("POST", `/api/runs/${runPath(run.name)}/interpolate`, body);
  state.frames = data.frames;
  const slider = $("walk-slider");
  slider.max = data.frames.length - 1; slider.value = 0; slider.disabled = false;
  const out = $("walk-out");
  out.innerHTML = "";
  out.appendChild(figure(data.frames[0], "t = 0", "frame"));
}));
$("walk-slider").addEventListener("input", (e) => {
  const i = Number(e.target.value);
  const fig = $("walk-out").querySelector("figure");
  fig.querySelector("img").src = state.frames[i];
  fig.querySelector("figcaption").textContent = `t = ${(i / (state.frames.length - 1)).toFixed(2)}`;
});

// ------------------------------------------------------------------ reports

function curve(key, points) {
  const w = 320, h = 160, pad = 30;
  const xs = points.map((p) => p[0]), ys = points.map((p) => p[1]).filter(Number.isFinite);
  const [x0, x1] = [Math.min(...xs), Math.max(...xs)], [y0, y1] = [Math.min(...ys), Math.max(...ys)];
  const sx = (x) => pad + (w - 2 * pad) * (x1 > x0 ? (x - x0) / (x1 - x0) : 0.5);
  const sy = (y) => h - pad - (h - 2 * pad) * (y1 > y0 ? (y - y0) / (y1 - y0) : 0.5);
  const line = points.filter((p) => Number.isFinite(p[1])).map((p) => `${sx(p[0]).toFixed(1)},${sy(p[1]).toFixed(1)}`).join(" ");
  return `<svg class="curve" width="${w}" height="${h}">` +
    `<text x="${pad}" y="16" font-size="12">${key}</text>` +
    `<text x="2" y="${pad + 4}" font-size="10">${y1.toPrecision(3)}</text>` +
    `<text x="2" y="${h - pad}" font-size="10">${y0.toPrecision(3)}</text>` +
    `<text x="${w - pad - 40}" y="${h - 8}" font-size="10">step ${x1}</text>` +
    `<polyline fill="none" stroke="#4a7bd0" stroke-width="1.5" points="${line}"/></svg>`;
}

function escapeHtml(text) {
  return String(text).replace(/[&<>"']/g, (c) => ({ "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;" })[c]);
}

$("report-run").addEventListener("change", guarded("report-error", showReport));
async function showReport() {
  const name = $("report-run").value;
  if (!name) return;
  const data = await api("GET", `/api/runs/${runPath(name)}/report`);
  const rows = Object.entries(data.metrics).map(([k, v]) => `<tr><td>${escapeHtml(k)}</td><td>${escapeHtml(v)}</td></tr>`);
  const hparams = Object.entries(data.hparams).map(([k, v]) => `${escapeHtml(k)}=${escapeHtml(JSON.stringify(v))}`).join(", ");
  let html = `<p class="meta">${escapeHtml(data.model)} on ${escapeHtml(data.data)}: ${hparams}</p>`;
  html += rows.length ? `<table>${rows.join("")}</table>` : `<p class="meta">no metrics.json yet (genzoo evaluate ${escapeHtml(name)})</p>`;
  html += Object.entries(data.curves).slice(0, 12).map(([k, pts]) => curve(escapeHtml(k), pts)).join("");
  $("report-out").innerHTML = html;
  for (const picture of data.pictures.slice(0, 40)) {
    $("report-out").appendChild(figure(`/api/runs/${runPath(name)}/files/${runPath(picture)}`, picture, "picture"));
  }
}

// ------------------------------------------------------------------ start

loadRuns().then(showReport).then(() => { window.genzooTimings.ready = performance.now(); },
  (e) => { $("draw-error").textContent = `could not list the runs: ${e.message}`; });
