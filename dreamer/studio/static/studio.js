// DeepDreamVideo studio: the page. Plain JavaScript, no build step. Every request carries
// the token the command printed; the server keeps all the state that matters (jobs,
// history, renders), so closing the page loses nothing.
"use strict";

const TOKEN = document.body.dataset.token;
const $ = (id) => document.getElementById(id);
const S = {
  film: null, schema: null, form: {}, width: 400, frame: 1, history: [], models: [],
  preview: null, shownOctaves: 0, stretch: null, sheet: null, sheetResult: null,
  render: null, historyCount: 0, layers: null, loop: null, checkTimer: null,
  curves: {}, errors: {}, active: false,
};

function url(path, params) {
  const u = new URL(path, location.href);
  u.searchParams.set("token", TOKEN);
  for (const [k, v] of Object.entries(params || {})) u.searchParams.set(k, v);
  return u.toString();
}

async function api(path, body) {
  const options = { headers: { "X-Studio-Token": TOKEN } };
  if (body !== undefined) {
    options.method = "POST";
    options.headers["Content-Type"] = "application/json";
    options.body = JSON.stringify(body);
  }
  const r = await fetch(url(path), options);
  const data = await r.json().catch(() => ({ error: `${r.status} ${r.statusText}` }));
  if (!r.ok) {
    const e = new Error(data.error || r.statusText);
    e.data = data;
    throw e;
  }
  return data;
}

const fileUrl = (relative) => url("files/" + relative);
const thumbUrl = (k, w) => url(`api/thumb/${k}`, { w });
const el = (tag, attrs, ...children) => {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (k === "class") node.className = v;
    else if (k.startsWith("on")) node.addEventListener(k.slice(2), v);
    else if (v !== undefined && v !== null) node.setAttribute(k, v);
  }
  for (const c of children) node.append(c instanceof Node ? c : document.createTextNode(c));
  return node;
};
const seconds = (s) => s == null ? "" : s >= 90 ? `${Math.floor(s / 60)} min ${Math.round(s % 60)} s` : `${s.toFixed(1)} s`;

// --- start -----------------------------------------------------------------------------

async function start() {
  const data = await api("api/init");
  S.film = data.film; S.schema = data.schema; S.form = data.form; S.width = data.width;
  S.history = data.history; S.historyCount = data.history.length; S.models = data.models;
  $("film-name").textContent = "— " + S.film.name;
  $("preview-width").value = S.width;
  buildModels();
  buildForm();
  renderHistory();
  if (S.film.extraction.state === "ready") showFilm();
  else $("extracting").hidden = false;
  bind();
  poll();
}

function showFilm() {
  $("extracting").hidden = true;
  $("main").hidden = false;
  const n = S.film.count;
  $("frame-count").textContent = n;
  $("scrubber").max = n;
  $("render-from").max = n; $("render-to").max = n;
  $("render-to").value = n;
  const thumbs = $("thumbs");
  thumbs.replaceChildren();
  const count = Math.min(n, 16);
  for (let i = 0; i < count; i++) {
    const k = count === 1 ? 1 : Math.round(1 + i * (n - 1) / (count - 1));
    thumbs.append(el("img", { src: thumbUrl(k, 96), "data-frame": k, title: `frame ${k}`,
                              alt: `frame ${k}`, onclick: () => setFrame(k) }));
  }
  setFrame(1);
  loadLayers();
  check();
}

function setFrame(k) {
  k = Math.max(1, Math.min(S.film.count, k | 0));
  S.frame = k;
  $("scrubber").value = k;
  $("frame-number").value = k;
  $("raw-img").src = thumbUrl(k, 400);
  for (const img of $("thumbs").children) img.classList.toggle("here", +img.dataset.frame === k);
  drawCurves();
}

// --- the settings ----------------------------------------------------------------------

function buildModels() {
  const select = $("model-select");
  select.replaceChildren(...S.models.map((m) => el("option", { value: m.key }, m.label)));
  if (!S.models.length) select.append(el("option", { value: "" }, "no model found: dreamvideo models download bvlc_googlenet"));
  select.value = S.form.model || (S.models[0] || {}).key || "";
}

function widget(w) {
  const id = "f-" + w.name;
  const value = S.form[w.name];
  let input;
  if (w.kind === "bool") {
    input = el("input", { type: "checkbox", id });
    input.checked = !!value;
  } else if (w.choices) {
    input = el("select", { id }, ...(w.default === "" ? [el("option", { value: "" }, "(default)")] : []),
               ...w.choices.map((c) => el("option", { value: c }, c)));
    input.value = value ?? "";
  } else {
    input = el("input", { type: "text", id, spellcheck: "false",
                          placeholder: w.default === "" ? "(none)" : String(w.default) });
    input.value = value ?? "";
  }
  input.addEventListener(w.kind === "bool" || w.choices ? "change" : "input", () => {
    S.form[w.name] = w.kind === "bool" ? input.checked : input.value;
    if (w.name === "layers") syncLayerSelect();
    scheduleCheck();
  });
  const box = el("div", { class: "widget", id: "w-" + w.name },
                 el("label", { for: id }, w.label), el("span", { class: "flags" }, w.flags.join(", ")),
                 w.kind === "bool" ? " " : "", input);
  if (w.upload) {
    const file = el("input", { type: "file", accept: "image/*", id: "guide-file" });
    file.addEventListener("change", () => upload(file, input));
    const clear = el("button", { onclick: () => { input.value = ""; S.form[w.name] = ""; scheduleCheck(); } }, "No guide");
    box.append(el("div", { class: "row" }, file, clear));
    input.readOnly = true;
  }
  box.append(el("p", { class: "help" }, (w.schedule && w.kind !== "text" ? "* takes a schedule, e.g. 1:(1.0), 60:(1.03). " : "") + w.help));
  box.append(el("div", { class: "err", id: "err-" + w.name }));
  if (w.schedule || w.name === "layers" || w.name === "blend") box.append(el("div", { id: "curve-" + w.name }));
  return box;
}

function buildForm() {
  const root = $("settings");
  root.replaceChildren();
  for (const group of S.schema.groups) {
    const details = el("details", { class: "group" }, el("summary", {}, group.title));
    if (group.key === "dream" || group.key === "film") details.open = true;
    for (const w of group.widgets) details.append(widget(w));
    root.append(details);
  }
  updateNeeds();
}

function fillForm() {
  for (const group of S.schema.groups) for (const w of group.widgets) {
    const input = $("f-" + w.name);
    if (!input) continue;
    if (w.kind === "bool") input.checked = !!S.form[w.name];
    else input.value = S.form[w.name] ?? "";
  }
  $("model-select").value = S.form.model;
  syncLayerSelect();
  updateNeeds();
}

function updateNeeds() {
  const on = { flow: !!S.form.flow, guide_image: !!S.form.guide_image, workers: false };
  for (const group of S.schema.groups) for (const w of group.widgets) {
    if (w.needs) $("w-" + w.name).classList.toggle("off", !on[w.needs]);
  }
}

function scheduleCheck() {
  clearTimeout(S.checkTimer);
  S.checkTimer = setTimeout(check, 250);
  updateNeeds();
}

async function check() {
  for (const node of document.querySelectorAll(".widget .err")) node.textContent = "";
  $("form-error").hidden = true;
  try {
    const data = await api("api/check", { form: S.form });
    S.curves = Object.fromEntries(data.curves.map((c) => [c.name, c]));
    S.errors = {};
  } catch (e) {
    S.curves = {};
    showFormError(e);
  }
  drawCurves();
}

function showFormError(e) {
  const errors = (e.data && e.data.errors) || { form: e.message };
  S.errors = errors;
  for (const [name, text] of Object.entries(errors)) {
    const node = $("err-" + name);
    if (node) node.textContent = text;
    else { $("form-error").textContent = text; $("form-error").hidden = false; }
  }
}

function drawCurves() {
  for (const node of document.querySelectorAll("[id^=curve-]")) {
    const c = S.curves[node.id.slice(6)];
    node.replaceChildren(c ? curveSvg(c) : "");
  }
}

function curveSvg(c) {
  const W = 300, H = 64, pad = 4;
  const ns = "http://www.w3.org/2000/svg";
  const svg = document.createElementNS(ns, "svg");
  svg.setAttribute("viewBox", `0 0 ${W} ${H}`);
  svg.setAttribute("preserveAspectRatio", "none");
  const lo = Math.min(...c.values), hi = Math.max(...c.values);
  const f0 = c.frames[0], f1 = c.frames[c.frames.length - 1];
  const x = (f) => pad + (W - 2 * pad) * (f1 === f0 ? 0.5 : (f - f0) / (f1 - f0));
  const y = (v) => H - pad - (H - 2 * pad) * (hi === lo ? 0.5 : (v - lo) / (hi - lo));
  const points = c.frames.map((f, i) => `${x(f).toFixed(1)},${y(c.values[i]).toFixed(1)}`);
  const line = document.createElementNS(ns, "polyline");
  line.setAttribute("points", points.join(" "));
  line.setAttribute("fill", "none");
  line.setAttribute("stroke", "#c98bff");
  line.setAttribute("stroke-width", "1.5");
  line.setAttribute("vector-effect", "non-scaling-stroke");
  const here = document.createElementNS(ns, "line");
  here.setAttribute("x1", x(S.frame)); here.setAttribute("x2", x(S.frame));
  here.setAttribute("y1", 0); here.setAttribute("y2", H);
  here.setAttribute("stroke", "#777");
  here.setAttribute("vector-effect", "non-scaling-stroke");
  const title = document.createElementNS(ns, "title");
  const at = c.frames.findIndex((f) => f >= S.frame);
  const value = c.values[at < 0 ? c.values.length - 1 : at];
  title.textContent = c.labels
    ? `${c.label} over the film: ${c.labels.join(", ")}; at frame ${S.frame}: ${c.labels[value]}`
    : `${c.label} over the film: ${lo} to ${hi}; at frame ${S.frame}: ${value}`;
  svg.append(title, line, here);
  const text = document.createElementNS(ns, "text");
  text.setAttribute("x", 6); text.setAttribute("y", 12);
  text.setAttribute("fill", "#a39db0"); text.setAttribute("font-size", "10");
  text.textContent = c.labels ? `${c.label}: ${c.labels.length} layers over frames ${f0}-${f1}`
                              : `${c.label}: ${+lo.toFixed(4)} to ${+hi.toFixed(4)} over frames ${f0}-${f1}`;
  svg.append(text);
  return svg;
}

async function upload(file, input) {
  const f = file.files[0];
  if (!f) return;
  $("err-guide_image").textContent = "uploading…";
  try {
    const r = await fetch(url("api/upload"), { method: "POST", body: f,
                                                headers: { "X-Studio-Token": TOKEN } });
    const data = await r.json().catch(() => ({ error: r.statusText }));
    if (!r.ok) throw new Error(data.error);
    input.value = data.value;
    S.form.guide_image = data.value;
    $("err-guide_image").textContent = "";
    scheduleCheck();
  } catch (e) {
    $("err-guide_image").textContent = e.message;
  }
}

// --- model and layers --------------------------------------------------------------------

async function loadLayers() {
  try {
    S.layers = await api("api/layers", { form: S.form });
  } catch (e) {
    S.layers = null;
    showFormError(e);
  }
  syncLayerSelect();
}

function syncLayerSelect() {
  const select = $("layer-select");
  const current = (S.form.layers || "").trim();
  const options = [el("option", { value: "customloop" }, "customloop — the original's loop, 4c to 5b and back")];
  for (const l of (S.layers ? S.layers.layers : [])) {
    if (!l.fits) continue;
    const shape = l.shape ? ` (${l.shape.join("×")})` : "";
    options.push(el("option", { value: l.name }, (l.spread ? "★ " : "") + l.name + shape));
  }
  if (current && !options.some((o) => o.value === current)) {
    options.unshift(el("option", { value: current }, current.length > 60 ? "as typed below" : current));
  }
  select.replaceChildren(...options);
  select.value = current;
}

function setLayer(name) {
  S.form.layers = name;
  $("f-layers").value = name;
  syncLayerSelect();
  scheduleCheck();
}

// --- jobs ------------------------------------------------------------------------------

async function submit(path, body, statusId) {
  try {
    const job = await api(path, body);
    S.active = true;
    return job;
  } catch (e) {
    if (e.data && e.data.errors) showFormError(e);
    if (statusId) $(statusId).textContent = e.message;
    return null;
  }
}

async function dream() {
  const width = +$("preview-width").value || S.width;
  const job = await submit("api/preview", { form: S.form, frame: S.frame, width }, "dream-status");
  if (!job) return;
  S.preview = job.id;
  S.shownOctaves = 0;
  $("octaves").replaceChildren();
  $("raw-img").src = thumbUrl(S.frame, width);
  $("dream-status").textContent = job.position ? `waiting (${job.position} before it)` : "dreaming…";
  $("cancel-btn").disabled = false;
}

async function stretch() {
  const width = +$("preview-width").value || S.width;
  const n = +$("stretch-n").value || 12;
  const job = await submit("api/stretch", { form: S.form, frame: S.frame, n, width }, "stretch-status");
  if (!job) return;
  S.stretch = job.id;
  stopLoop();
  $("flicker").replaceChildren();
  $("stretch-status").textContent = "waiting…";
}

async function sheet() {
  const job = await submit("api/sheet", { form: S.form, frame: S.frame }, "save-status");
  if (job) { S.sheet = job.id; $("sheet").replaceChildren(el("p", { class: "status" }, "dreaming the layer sheet…")); }
}

async function save() {
  try {
    const width = +$("preview-width").value || S.width;
    const data = await api("api/save", { form: S.form, frame: S.frame, width });
    $("saved").hidden = false;
    $("toml-path").textContent = data.path;
    $("toml-text").textContent = data.text;
    const c = data.commands;
    $("commands").textContent =
      `# render the film (stage 2):\n${c.render}\n` +
      (c.assemble ? `# then put it back together with its sound (stage 3):\n${c.assemble}\n` : "") +
      `# this preview exactly (frame ${S.frame} at ${width} px):\n${c.preview}`;
    $("save-status").textContent = "saved";
  } catch (e) {
    showFormError(e);
    $("save-status").textContent = e.message;
  }
}

async function render(overwrite) {
  $("render-replace").hidden = true;
  const job = await submit("api/render", { form: S.form, first: +$("render-from").value,
                                            last: +$("render-to").value, overwrite: !!overwrite },
                           "render-text");
  if (!job) return;
  S.render = job.id;
  $("result-video").hidden = true;
  $("render-stop").disabled = false;
  $("render-text").textContent = "waiting for the device…";
}

const cancel = (id) => id && api(`api/cancel/${id}`, {}).catch(() => {});

// --- what the server says ------------------------------------------------------------------

async function poll() {
  let state = null;
  try {
    state = await api("api/state");
  } catch (e) {
    $("queue").textContent = "the studio does not answer (stopped?)";
  }
  if (state) update(state);
  const busy = state && (state.film.extraction.state === "extracting" ||
                         state.jobs.some((j) => j.state === "queued" || j.state === "running"));
  setTimeout(poll, busy ? 300 : 1200);
}

function update(state) {
  const x = state.film.extraction;
  if (S.film.extraction.state !== "ready") {
    $("extract-text").textContent = x.state === "failed" ? x.message
      : `Cutting the film into frames (stage 1): ${x.done} of ${x.total || "?"}`;
    $("extract-progress").max = x.total || 1;
    $("extract-progress").value = x.done;
    if (x.state === "ready") { S.film = state.film; showFilm(); }
  }
  showQueue(state.jobs);
  const byId = Object.fromEntries(state.jobs.map((j) => [j.id, j]));
  if (S.preview && byId[S.preview]) showPreview(byId[S.preview]);
  if (S.stretch && byId[S.stretch]) showStretch(byId[S.stretch]);
  if (S.sheet && byId[S.sheet]) showSheet(byId[S.sheet]);
  if (state.render) showRender(state.render);
  if (state.history !== S.historyCount) {
    S.historyCount = state.history;
    api("api/history").then((h) => { S.history = h; renderHistory(); });
  }
  // a preview started elsewhere (the first look) is followed too
  if (!S.preview) {
    const first = state.jobs.find((j) => j.kind === "preview" && (j.state === "running" || j.state === "queued"));
    if (first) { S.preview = first.id; S.shownOctaves = 0; $("octaves").replaceChildren(); }
  }
}

function showQueue(jobs) {
  const live = jobs.filter((j) => j.state === "running" || j.state === "queued");
  const chips = live.map((j) => {
    let what = j.title;
    const p = j.progress || {};
    if (j.state === "running" && p.octave) what += ` · octave ${p.octave}/${p.of}`;
    if (j.state === "running" && p.total && p.done != null) what += ` · ${p.done}/${p.total}`;
    return el("span", { class: "job " + j.state, "data-state": j.state },
              j.state === "running" ? "▶ " : `⏳ ${j.position}. `, what,
              el("button", { title: "cancel", onclick: () => cancel(j.id) }, "×"));
  });
  if (!chips.length) chips.push(el("span", { class: "status" }, "nothing dreaming"));
  $("queue").replaceChildren(...chips);
}

function showPreview(job) {
  for (let i = S.shownOctaves; i < job.octaves.length; i++) {
    const o = job.octaves[i];
    const src = url(`api/job/${job.id}/octave/${i}`);
    $("octaves").append(el("figure", {}, el("img", { src, alt: `octave ${o.octave}` }),
                           el("figcaption", {}, `${o.octave}/${o.of} · ${o.width}×${o.height} · ${seconds(o.seconds)}`)));
    if (job.state === "running") $("dream-img").src = src;
  }
  S.shownOctaves = job.octaves.length;
  const status = $("dream-status");
  if (job.state === "queued") status.textContent = `waiting (${job.position} before it)`;
  else if (job.state === "running") status.textContent = job.octaves.length
    ? `octave ${job.octaves.length} of ${job.octaves[0].of}…` : "preparing the net…";
  else {
    $("cancel-btn").disabled = true;
    if (job.state === "done") {
      const r = job.result;
      $("dream-img").src = fileUrl(r.image);
      $("raw-img").src = fileUrl(r.raw);
      $("dream-caption").textContent = `frame ${r.frame} · ${r.layer} · seed ${r.seed}`;
      status.textContent = `done in ${seconds(r.seconds)} (first octave ${seconds(r.first_octave)})`;
      if (r.form && r.form.seed !== undefined && S.form.seed === "") { S.form.seed = r.form.seed; fillForm(); }
    } else status.textContent = job.message;
    S.preview = null;
  }
  $("dream-img").dataset.state = job.state;
}

function showStretch(job) {
  const p = job.progress || {};
  if (job.state === "queued") $("stretch-status").textContent = `waiting (${job.position} before it)`;
  else if (job.state === "running") {
    $("stretch-status").textContent = p.measuring ? "measuring the flicker…"
      : `frame ${p.done || 0} of ${p.total || "?"}` + (p.octave ? ` (octave ${p.octave}/${p.of})` : "");
    if (p.frames && p.frames.length) $("stretch-img").src = fileUrl(p.frames[p.frames.length - 1]);
  } else if (job.state === "done") {
    const r = job.result;
    $("stretch-status").textContent = `frames ${r.first}-${r.last} in ${seconds(job.seconds)}`;
    playLoop(r.frames, r.fps);
    showFlicker(r);
    S.stretch = null;
  } else {
    $("stretch-status").textContent = job.message;
    S.stretch = null;
  }
}

function playLoop(frames, fps) {
  stopLoop();
  const images = frames.map((f) => { const i = new Image(); i.src = fileUrl(f); return i; });
  let i = 0;
  S.loop = setInterval(() => { $("stretch-img").src = images[i].src; i = (i + 1) % images.length; },
                       1000 / Math.max(1, Math.min(fps || 12, 60)));
  $("stretch-caption").textContent = `${frames.length} frames as a loop at ${+(fps || 12).toFixed(2)} fps`;
}

function stopLoop() { if (S.loop) clearInterval(S.loop); S.loop = null; }

function showFlicker(r) {
  const n = (v) => v == null ? "–" : v.toFixed(2);
  const table = el("table", {},
    el("tr", {}, el("td", {}, "added flicker"), el("td", { class: "v", id: "flicker-added" }, n(r.added))),
    el("tr", {}, el("td", {}, "strength"), el("td", { class: "v", id: "flicker-strength" }, n(r.strength))),
    el("tr", {}, el("td", {}, "ratio"), el("td", { class: "v" }, n(r.ratio))),
    el("tr", {}, el("td", {}, "the film's own residual"), el("td", { class: "v" }, n(r.residual))));
  const help = el("p", { class: "help" }, "grey levels 0-255: added flicker = how much more the dream " +
    "changes from frame to frame than the film does (lower is steadier); strength = how much the dream " +
    "changes the film; ratio = added / strength");
  const values = r.added_per_pair.map((v) => v ?? 0);
  const curve = values.length > 1 ? curveSvg({ label: "added flicker per frame", frames: r.pairs, values }) : "";
  $("flicker").replaceChildren(el("h3", {}, "Flicker"), table, curve, help);
}

function showSheet(job) {
  if (job.state === "running" || job.state === "queued") {
    const p = job.progress || {};
    $("sheet").replaceChildren(el("p", { class: "status" },
      job.state === "queued" ? "waiting…" : `dreaming layer ${(p.done || 0) + 1} of ${p.total || "?"}: ${p.layer || ""}`));
    return;
  }
  S.sheet = null;
  if (job.state !== "done") { $("sheet").replaceChildren(el("p", { class: "error" }, job.message)); return; }
  const r = job.result;
  S.sheetResult = r;
  const img = el("img", { src: fileUrl(r.image), alt: "the layer sheet: click a tile to dream at its layer", id: "sheet-img" });
  img.addEventListener("click", (ev) => {
    const box = img.getBoundingClientRect();
    const scale = img.naturalWidth / box.width;
    const col = Math.floor((ev.clientX - box.left) * scale / r.tile[0]);
    const row = Math.floor((ev.clientY - box.top) * scale / (r.tile[1] + r.label));
    const i = row * r.columns + col;
    if (i > 0 && i < r.layers.length) setLayer(r.layers[i]);
  });
  $("sheet").replaceChildren(img, el("p", { class: "help" }, `frame ${r.frame}: click a tile to use its layer`));
}

function showRender(job) {
  if (S.render && job.id !== S.render) return;
  S.render = job.id;
  const p = job.progress || {};
  const bar = $("render-progress");
  bar.max = p.total || 1;
  bar.value = p.done || 0;
  const live = job.state === "running" || job.state === "queued";
  $("render-stop").disabled = !live;
  $("render-btn").disabled = live;
  let text;
  if (job.state === "queued") text = `waiting (${job.position} before it)`;
  else if (job.state === "running" && p.stage === 3) text = job.message;
  else if (job.state === "running") {
    text = `frame ${p.done || 0} of ${p.total || "?"}`;
    if (p.per_frame) text += ` · ${p.per_frame} s a frame`;
    if (p.eta != null) text += ` · ${seconds(p.eta)} left`;
    if (p.last) $("render-last").src = fileUrl(`dreamed/${String(p.last).padStart(8, "0")}.${S.film.image_type}`) + `&v=${p.last}`;
  } else if (job.state === "done") {
    text = job.message || "done";
    if (job.result.video && $("result-video").dataset.src !== job.result.video) {
      $("result-video").dataset.src = job.result.video;
      $("result-video").src = url(job.result.video.split("?")[0], { v: job.result.video.split("v=")[1] || "" });
      $("result-video").hidden = false;
    }
  } else {
    text = job.message;
    if (job.state === "stopped") $("render-btn").textContent = "Resume";
    if (job.state === "failed" && /--overwrite/.test(job.message)) {
      $("render-error").textContent = job.message;
      $("render-replace").hidden = false;
    }
  }
  if (job.state === "done") $("render-btn").textContent = "Render";
  $("render-text").textContent = text;
  $("render-text").dataset.state = job.state;
}

// --- history ---------------------------------------------------------------------------

function renderHistory() {
  const items = S.history.slice(-40).reverse().map((h) =>
    el("figure", { "data-id": h.id, onclick: () => restore(h) },
       el("img", { src: fileUrl(h.image), alt: `preview of frame ${h.frame}` }),
       el("figcaption", {}, `frame ${h.frame} · ${h.layer} · ${h.when}`)));
  $("history").replaceChildren(...items);
  if (!items.length) $("history").append(el("p", { class: "status" }, "every preview lands here"));
}

function restore(h) {
  S.form = { ...h.form };
  fillForm();
  if (S.film && S.film.count) setFrame(h.frame);
  $("preview-width").value = h.width;
  $("dream-img").src = fileUrl(h.image);
  $("raw-img").src = fileUrl(h.raw);
  $("dream-caption").textContent = `frame ${h.frame} · ${h.layer} · seed ${h.seed} (from the history)`;
  for (const f of $("history").children) f.classList.toggle("here", f.dataset.id === h.id);
  loadLayers();
  check();
}

// --- wiring ----------------------------------------------------------------------------

function bind() {
  let timer = null;
  $("scrubber").addEventListener("input", () => {
    $("frame-number").value = $("scrubber").value;
    clearTimeout(timer);
    timer = setTimeout(() => setFrame(+$("scrubber").value), 60);
  });
  $("dream-btn").addEventListener("click", dream);
  $("cancel-btn").addEventListener("click", () => cancel(S.preview));
  $("stretch-btn").addEventListener("click", stretch);
  $("sheet-btn").addEventListener("click", sheet);
  $("save-btn").addEventListener("click", save);
  $("render-btn").addEventListener("click", () => render(false));
  $("render-overwrite").addEventListener("click", () => render(true));
  $("render-stop").addEventListener("click", () => cancel(S.render));
  $("layer-select").addEventListener("change", () => setLayer($("layer-select").value));
  $("model-select").addEventListener("change", () => {
    S.form.model = $("model-select").value;
    loadLayers();
    scheduleCheck();
  });
  document.addEventListener("keydown", (ev) => {
    if (ev.target.tagName === "INPUT" || ev.target.tagName === "SELECT") return;
    if (ev.key === "ArrowRight") setFrame(S.frame + 1);
    if (ev.key === "ArrowLeft") setFrame(S.frame - 1);
  });
}

start().catch((e) => { document.body.prepend(el("p", { class: "error" }, "The studio could not start: " + e.message)); });
