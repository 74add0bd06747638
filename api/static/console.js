// ragpress console: plain ES module, no build step. Talks only to the REST API (v1) of the server serving it.

const $ = (sel) => document.querySelector(sel);
const el = (tag, attrs = {}, ...children) => {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs)) {
    if (key === "class") node.className = value;
    else if (key.startsWith("on")) node.addEventListener(key.slice(2), value);
    else node.setAttribute(key, value);
  }
  for (const child of children.flat()) {
    if (child !== null && child !== undefined) node.append(child instanceof Node ? child : String(child));
  }
  return node;
};

// ---------- API access ----------

const KEY_STORAGE = "ragpress.apiKey";

function headers(extra = {}) {
  const key = localStorage.getItem(KEY_STORAGE);
  // Keyless requests are accepted by the embedded default on localhost; with auth on, the key is required.
  return key ? { Authorization: `Bearer ${key}`, ...extra } : { ...extra };
}

async function api(method, path, { json, yaml, form, raw = false } = {}) {
  const init = { method, headers: headers() };
  if (form !== undefined) {
    init.body = form;  // the browser sets multipart/form-data with its boundary
  } else if (json !== undefined) {
    init.headers["Content-Type"] = "application/json";
    init.body = JSON.stringify(json);
  } else if (yaml !== undefined) {
    init.headers["Content-Type"] = "application/yaml";
    init.body = yaml;
  }
  const response = await fetch(path, init);
  if (raw) return response;
  const body = await response.json().catch(() => ({}));
  if (!response.ok) {
    const error = new Error(body?.error?.message || `${response.status} ${response.statusText}`);
    error.status = response.status;
    error.body = body;
    throw error;
  }
  return body;
}

// Job ids are shown by their first 8 characters: the server accepts any unique prefix that long.
const shortId = (id) => id.slice(0, 8);
const jobIdCode = (id) => el("code", { class: "job-id", title: id }, shortId(id));

// Document ids may be relative paths: each segment is encoded, the slashes between them stay.
const docPath = (id) => id.split("/").map(encodeURIComponent).join("/");

const when = (iso) => (iso ? new Date(iso).toLocaleString() : "");
const plural = (n, word) => `${n} ${word}${n === 1 ? "" : "s"}`;

// The confirmation step before a deletion; `typed` must be typed first (for what cannot be undone wholesale).
function confirmStep({ title, message, action, typed = null }) {
  const dialog = $("#confirm");
  $("#confirm-title").textContent = title;
  $("#confirm-message").textContent = message;
  $("#confirm-ok").textContent = action;
  $("#confirm-ok").disabled = typed !== null;
  $("#confirm-typed").hidden = typed === null;
  $("#confirm-expected").textContent = typed ?? "";
  $("#confirm-input").value = "";
  dialog.returnValue = "";
  dialog.showModal();
  (typed === null ? $("#confirm-cancel") : $("#confirm-input")).focus();
  return new Promise((resolve) => {
    dialog.addEventListener("close", () => resolve(dialog.returnValue === "ok"), { once: true });
  });
}

let toastTimer;
function toast(message, kind = "info") {
  const box = $("#toast");
  box.textContent = message;
  box.className = `toast ${kind}`;
  box.hidden = false;
  clearTimeout(toastTimer);
  toastTimer = setTimeout(() => { box.hidden = true; }, 4000);
}

// ---------- tabs ----------

const pages = {
  pipelines: () => loadPipelines(),
  playground: () => loadPlayground(),
  documents: () => loadCollections(),
  jobs: () => loadJobs(),
};

function showTab(name) {
  if (!(name in pages)) name = "pipelines";
  for (const tab of document.querySelectorAll(".tab")) tab.classList.toggle("active", tab.dataset.tab === name);
  for (const page of document.querySelectorAll(".page")) page.hidden = page.id !== `page-${name}`;
  pages[name]();
}

// ---------- pipeline editor ----------

const editor = { name: null, version: null, savedText: "", valid: false, problems: [] };
let validateTimer;
let validateSeq = 0;

async function loadPipelines(select) {
  const list = $("#pipeline-list");
  try {
    const { pipelines } = await api("GET", "/v1/pipelines");
    list.replaceChildren(...pipelines.map((p) => el("li", {
      class: `item${p.name === editor.name ? " selected" : ""}`,
      "data-name": p.name,
      onclick: () => openPipeline(p.name),
    }, el("span", { class: "name" }, p.name),
    el("span", { class: "meta" }, p.builtin ? "built-in" : `v${p.version}`))));
    const wanted = select || editor.name || pipelines[0]?.name;
    if (wanted && wanted !== editor.name) await openPipeline(wanted);
  } catch (err) {
    list.replaceChildren(el("li", { class: "muted" }, err.message));
  }
}

async function openPipeline(name, version) {
  const query = version ? `?version=${version}` : "";
  const body = await api("GET", `/v1/pipelines/${encodeURIComponent(name)}${query}`);
  editor.name = name;
  editor.version = body.version;
  editor.savedText = version ? "" : body.yaml;
  $("#editor-title").textContent = version ? `${name} — viewing v${version}` : name;
  setEditorText(body.yaml);
  for (const item of document.querySelectorAll("#pipeline-list .item")) {
    item.classList.toggle("selected", item.dataset.name === name);
  }
  await loadVersions();
  validateNow();
}

async function loadVersions() {
  const list = $("#version-list");
  try {
    const { versions } = await api("GET", `/v1/pipelines/${encodeURIComponent(editor.name)}/versions`);
    if (!versions.length) {
      list.replaceChildren(el("li", { class: "muted" }, "Built-in; saving creates version 1."));
      return;
    }
    list.replaceChildren(...versions.slice().reverse().map((v) => el("li", { class: "item version" },
      el("span", { class: "name" }, `v${v.version}`, v.version === editor.version ? " (current)" : ""),
      el("span", { class: "meta" }, when(v.created_at)),
      el("span", { class: "actions" },
        el("button", { class: "link", onclick: () => openPipeline(editor.name, v.version) }, "view"),
        v.version === editor.version ? null
          : el("button", { class: "link", "data-rollback": v.version, onclick: () => rollback(v.version) }, "roll back")))));
  } catch (err) {
    list.replaceChildren(el("li", { class: "muted" }, err.status === 404 ? "No saved versions." : err.message));
  }
}

async function rollback(version) {
  try {
    const body = await api("POST", `/v1/pipelines/${encodeURIComponent(editor.name)}/rollback`, { json: { version } });
    toast(`Rolled back: ${editor.name} is now v${body.version} (copy of v${version}).`, "ok");
    editor.name = null;
    await loadPipelines(body.name);
  } catch (err) {
    toast(`Rollback failed: ${err.message}`, "error");
  }
}

function setEditorText(text) {
  $("#yaml-editor").value = text;
  editor.problems = [];
  renderEditor();
}

function escapeHtml(text) {
  return text.replace(/&/g, "&amp;").replace(/</g, "&lt;").replace(/>/g, "&gt;");
}

// The textarea stays the real input; a <pre> behind it paints line highlights so errors sit on their line.
function renderEditor() {
  const text = $("#yaml-editor").value;
  const lines = text.split("\n");
  const bad = new Set(editor.problems.map((p) => p.line).filter(Boolean));
  $("#gutter").innerHTML = lines.map((_, i) =>
    `<span class="${bad.has(i + 1) ? "bad" : ""}">${i + 1}</span>`).join("\n");
  $("#highlight").innerHTML = lines.map((line, i) => {
    const cls = bad.has(i + 1) ? "line bad" : "line";
    const comment = line.trimStart().startsWith("#");
    const key = !comment && line.match(/^(\s*-?\s*)([\w.]+)(:)(.*)$/);
    const body = comment ? `<span class="c">${escapeHtml(line)}</span>`
      : key ? `${escapeHtml(key[1])}<span class="k">${escapeHtml(key[2])}</span>${key[3]}<span class="v">${escapeHtml(key[4])}</span>`
        : escapeHtml(line);
    return `<span class="${cls}">${body || " "}</span>`;
  }).join("\n");
  syncScroll();
  const dirty = editor.savedText !== text;
  $("#save-pipeline").disabled = !editor.name || !editor.valid || !dirty;
}

function syncScroll() {
  const area = $("#yaml-editor");
  $("#highlight").style.transform = `translate(${-area.scrollLeft}px, ${-area.scrollTop}px)`;
  $("#gutter").style.transform = `translateY(${-area.scrollTop}px)`;
}

function onEdit() {
  renderEditor();
  clearTimeout(validateTimer);
  $("#validity").textContent = "checking…";
  $("#validity").className = "badge pending";
  validateTimer = setTimeout(validateNow, 400);  // debounce: one request per pause in typing
}

async function validateNow() {
  if (!editor.name) return;
  const seq = ++validateSeq;
  const text = $("#yaml-editor").value;
  try {
    const body = await api("POST", `/v1/pipelines/${encodeURIComponent(editor.name)}/validate`, { yaml: text });
    if (seq !== validateSeq) return;  // a newer edit is being validated; this answer is stale
    editor.valid = body.valid;
    editor.problems = body.problems || [];
    if (body.graph) renderGraph(body.graph);
  } catch (err) {
    if (seq !== validateSeq) return;
    editor.valid = false;
    editor.problems = err.body?.error?.problems || [{ message: err.message }];
  }
  renderProblems();
  renderEditor();
}

function renderProblems() {
  const badge = $("#validity");
  badge.textContent = editor.valid ? "valid" : `${editor.problems.length} problem${editor.problems.length === 1 ? "" : "s"}`;
  badge.className = `badge ${editor.valid ? "ok" : "error"}`;
  $("#problems").replaceChildren(...editor.problems.map((p) => el("li", {
    class: "problem",
    onclick: () => p.line && jumpToLine(p.line),
  },
  el("span", { class: "where" }, p.line ? `line ${p.line}` : "—"),
  p.field ? el("code", { class: "field" }, p.field) : null,
  el("span", { class: "message" }, p.message))));
}

function jumpToLine(line) {
  const area = $("#yaml-editor");
  const lines = area.value.split("\n");
  const start = lines.slice(0, line - 1).reduce((n, l) => n + l.length + 1, 0);
  area.focus();
  area.setSelectionRange(start, start + (lines[line - 1] || "").length);
}

async function savePipeline() {
  const text = $("#yaml-editor").value;
  try {
    const body = await api("PUT", `/v1/pipelines/${encodeURIComponent(editor.name)}`, { yaml: text });
    editor.version = body.version;
    editor.savedText = body.yaml;
    $("#editor-title").textContent = editor.name;
    toast(`Saved ${body.name} as version ${body.version}.`, "ok");
    await loadPipelines();
    await loadVersions();
    renderEditor();
  } catch (err) {
    editor.problems = err.body?.error?.problems || [{ message: err.message }];
    editor.valid = false;
    renderProblems();
    renderEditor();
    toast(`Not saved: ${err.message}`, "error");
  }
}

function newPipeline() {
  const name = $("#new-pipeline-name").value.trim();
  if (!name) return;
  // A new pipeline starts from what is in the editor, so it is valid from the first keystroke.
  editor.name = name;
  editor.savedText = "";
  editor.version = null;
  $("#editor-title").textContent = `${name} (unsaved)`;
  $("#version-list").replaceChildren(el("li", { class: "muted" }, "Not saved yet."));
  validateNow();
}

// A simple layered layout: each node sits one column right of its deepest predecessor.
function renderGraph(graph) {
  const names = graph.nodes.map((n) => n.name);
  const edges = graph.edges.map((e) => ({
    from: e.from.split(".")[0], to: e.to.split(".")[0],
    label: `${e.from.split(".").slice(1).join(".")} → ${e.to.split(".").slice(1).join(".")}`,
  }));
  const layer = Object.fromEntries(names.map((n) => [n, 0]));
  for (let pass = 0; pass < names.length; pass++) {
    for (const e of edges) if (layer[e.to] <= layer[e.from]) layer[e.to] = layer[e.from] + 1;
  }
  const columns = [];
  for (const n of names) (columns[layer[n]] ||= []).push(n);
  const W = 170, H = 54, GX = 40, GY = 22;
  const pos = {};
  columns.forEach((col, x) => col.forEach((n, y) => { pos[n] = { x: 10 + x * (W + GX), y: 10 + y * (H + GY) }; }));
  // Long chains are laid out vertically instead, so the panel does not need to scroll sideways.
  const vertical = columns.length > 2;
  if (vertical) {
    columns.forEach((col, y) => col.forEach((n, x) => { pos[n] = { x: 10 + x * (W + GX), y: 10 + y * (H + GY) }; }));
  }
  const width = Math.max(...Object.values(pos).map((p) => p.x)) + W + 10;
  const height = Math.max(...Object.values(pos).map((p) => p.y)) + H + 10;
  const types = Object.fromEntries(graph.nodes.map((n) => [n.name, n.type]));
  const ns = "http://www.w3.org/2000/svg";
  const svg = document.createElementNS(ns, "svg");
  svg.setAttribute("viewBox", `0 0 ${width} ${height}`);
  svg.setAttribute("width", width);
  svg.setAttribute("class", "graph-svg");
  svg.innerHTML = `<defs><marker id="arrow" viewBox="0 0 10 10" refX="9" refY="5" markerWidth="7" markerHeight="7"
    orient="auto-start-reverse"><path d="M0,0 L10,5 L0,10 z" fill="#94a3b8"/></marker></defs>`;
  for (const e of edges) {
    const a = pos[e.from], b = pos[e.to];
    if (!a || !b) continue;
    const path = document.createElementNS(ns, "path");
    const d = vertical
      ? `M${a.x + W / 2},${a.y + H} C${a.x + W / 2},${a.y + H + GY / 2} ${b.x + W / 2},${b.y - GY / 2} ${b.x + W / 2},${b.y}`
      : `M${a.x + W},${a.y + H / 2} C${a.x + W + GX / 2},${a.y + H / 2} ${b.x - GX / 2},${b.y + H / 2} ${b.x},${b.y + H / 2}`;
    path.setAttribute("d", d);
    path.setAttribute("class", "edge");
    path.setAttribute("marker-end", "url(#arrow)");
    const title = document.createElementNS(ns, "title");
    title.textContent = e.label;
    path.append(title);
    svg.append(path);
  }
  for (const n of names) {
    const g = document.createElementNS(ns, "g");
    g.setAttribute("class", "node");
    g.setAttribute("data-name", n);
    g.setAttribute("transform", `translate(${pos[n].x},${pos[n].y})`);
    const shortType = (types[n] || "").split(".").pop();
    g.innerHTML = `<rect width="${W}" height="${H}" rx="8"/><text x="12" y="22" class="node-name"></text>
      <text x="12" y="40" class="node-type"></text><title></title>`;
    g.querySelector(".node-name").textContent = n;
    g.querySelector(".node-type").textContent = shortType;
    g.querySelector("title").textContent = types[n] || "";
    svg.append(g);
  }
  $("#graph").replaceChildren(svg);
}

// ---------- query playground ----------

async function loadPlayground() {
  try {
    const [{ collections }, { pipelines }] = await Promise.all([api("GET", "/v1/collections"), api("GET", "/v1/pipelines")]);
    const select = $("#collection");
    const current = select.value;
    select.replaceChildren(...collections.map((c) => {
      const name = c.name ?? c.collection;
      return el("option", { value: name }, `${name} (${c.documents ?? "?"} docs)`);
    }));
    if (current) select.value = current;
    const pipe = $("#query-pipeline");
    const chosen = pipe.value;
    pipe.replaceChildren(el("option", { value: "" }, "default"),
      ...pipelines.filter((p) => p.name !== "ingestion").map((p) => el("option", { value: p.name }, p.name)));
    pipe.value = chosen;
  } catch (err) {
    toast(err.message, "error");
  }
}

// SSE over POST: EventSource only does GET, so read the body stream and split it into `event:`/`data:` blocks.
async function* sseEvents(response) {
  const reader = response.body.pipeThrough(new TextDecoderStream()).getReader();
  let buffer = "";
  for (;;) {
    const { value, done } = await reader.read();
    if (done) break;
    buffer += value;
    let cut;
    while ((cut = buffer.search(/\r?\n\r?\n/)) >= 0) {
      const block = buffer.slice(0, cut);
      buffer = buffer.slice(cut).replace(/^\r?\n\r?\n/, "");
      let event = "message";
      const data = [];
      for (const line of block.split(/\r?\n/)) {
        if (line.startsWith("event:")) event = line.slice(6).trim();
        else if (line.startsWith("data:")) data.push(line.slice(5).replace(/^ /, ""));
      }
      yield { event, data: data.length ? JSON.parse(data.join("\n")) : null };
    }
  }
}

async function ask(evt) {
  evt.preventDefault();
  const collection = $("#collection").value;
  const question = $("#question").value.trim();
  if (!collection || !question) {
    toast("Choose a collection and type a question.", "error");
    return;
  }
  const generate = $("#generate").checked;
  const request = { query: question, top_k: Number($("#top-k").value) || 4, generate, stream: generate };
  if ($("#query-pipeline").value) request.pipeline = $("#query-pipeline").value;
  const answer = $("#answer");
  const status = $("#answer-status");
  answer.textContent = "";
  answer.dataset.tokens = "0";
  answer.className = "answer streaming";
  status.textContent = "running…";
  status.className = "badge pending";
  $("#sources").replaceChildren();
  $("#timings").replaceChildren();
  $("#tokens").textContent = "—";
  $("#ask").disabled = true;
  try {
    const response = await api("POST", `/v1/collections/${encodeURIComponent(collection)}/query`, { json: request, raw: true });
    if (!response.ok) {
      const body = await response.json().catch(() => ({}));
      throw new Error(body?.error?.message || `${response.status} ${response.statusText}`);
    }
    if (request.stream) {
      for await (const { event, data } of sseEvents(response)) {
        if (event === "token") {
          answer.textContent += data.text;
          answer.dataset.tokens = String(Number(answer.dataset.tokens || 0) + 1);  // lets tests see it streamed
        }
        else if (event === "result") showResult(data);
        else if (event === "error") throw new Error(data.message);
      }
    } else {
      showResult(await response.json());
    }
  } catch (err) {
    status.textContent = "error";
    status.className = "badge error";
    answer.className = "answer error-text";
    answer.textContent = err.message;
  } finally {
    $("#ask").disabled = false;
  }
}

function showResult(result) {
  const answer = $("#answer");
  const status = $("#answer-status");
  answer.className = "answer done";
  if (result.answer !== undefined && result.answer !== null) answer.textContent = result.answer;
  else answer.textContent = "(retrieval only — no answer generated)";
  status.textContent = result.abstained ? `abstained${result.abstain_reason ? `: ${result.abstain_reason}` : ""}` : "done";
  status.className = `badge ${result.abstained ? "warn" : "ok"}`;

  const timings = result.timings_ms || {};
  const max = Math.max(1, ...Object.values(timings).filter((v) => typeof v === "number"));
  $("#timings").replaceChildren(...Object.entries(timings).map(([stage, ms]) => el("tr", {},
    el("th", {}, stage),
    el("td", { class: "bar-cell" }, el("span", { class: "bar", style: `width:${((ms ?? 0) / max) * 100}%` })),
    el("td", { class: "num" }, ms === null || ms === undefined ? "—" : `${Number(ms).toFixed(1)} ms`))));

  const usage = result.usage || {};
  const before = usage.context_tokens;
  const after = usage.context_tokens_after_pruning ?? before;
  if (typeof before === "number") {
    const saved = before - after;
    const pct = before ? Math.round((saved / before) * 100) : 0;
    $("#tokens").className = "tokens";
    $("#tokens").replaceChildren(
      el("span", {}, el("b", {}, before), " context tokens → ", el("b", {}, after), " after pruning "),
      el("span", { class: `badge ${saved > 0 ? "ok" : ""}`, id: "tokens-saved" }, `${saved} saved (${pct}%)`));
  }

  $("#sources").replaceChildren(...(result.documents || []).map(renderSource));
}

// Sentences come as [start, end] spans into the text; kept_sentences (when a pruner ran) lists kept indices.
function renderSource(doc) {
  const text = doc.text || "";
  const spans = Array.isArray(doc.sentences) && doc.sentences.length ? doc.sentences : [[0, text.length]];
  const kept = Array.isArray(doc.kept_sentences) ? new Set(doc.kept_sentences) : null;
  const body = el("p", { class: "source-text" });
  let cursor = 0;
  spans.forEach(([start, end], i) => {
    if (start > cursor) body.append(text.slice(cursor, start));
    const sentence = text.slice(start, end);
    body.append(kept && !kept.has(i) ? el("del", { class: "pruned" }, sentence) : el("span", { class: "kept" }, sentence));
    cursor = end;
  });
  if (cursor < text.length) body.append(text.slice(cursor));
  const prunedCount = kept ? spans.length - kept.size : 0;
  return el("li", { class: "source" },
    el("div", { class: "source-head" },
      el("span", { class: "doc-id" }, doc.doc_id ?? doc.id),
      el("span", { class: "score" }, `score ${typeof doc.score === "number" ? doc.score.toFixed(3) : "—"}`),
      kept ? el("span", { class: `badge ${prunedCount ? "warn" : "ok"}` },
        prunedCount ? `${prunedCount} of ${spans.length} sentences pruned` : "all sentences kept") : null),
    body);
}

// ---------- documents ----------

const PAGE_SIZE = 50;
// `after` is the cursor of the page shown; `previous` the cursors of the pages before it, for going back.
const docs = {
  collections: [], collection: null, after: null, previous: [], next: null, openId: null, level: "all", chunks: [],
};
let uploadTimer;
let followedJob = null;  // the upload being followed: a newer upload stops the older one's polling

async function loadCollections(select) {
  let collections;
  try {
    ({ collections } = await api("GET", "/v1/collections"));
  } catch (err) {
    $("#collection-list").replaceChildren(el("li", { class: "muted" }, err.message));
    return;
  }
  docs.collections = collections;
  const names = collections.map((c) => c.name);
  const wanted = select ?? (names.includes(docs.collection) ? docs.collection : names[0] ?? null);
  if (wanted === docs.collection) {
    renderCollections();
    await loadDocuments();
  } else {
    await openCollection(wanted);
  }
}

async function openCollection(name) {
  Object.assign(docs, { collection: name, after: null, previous: [], next: null });
  closeDocument();
  renderCollections();
  await loadDocuments();
}

function renderCollections() {
  const list = $("#collection-list");
  list.replaceChildren(...docs.collections.map((c) => el("li", {
    class: `item${c.name === docs.collection ? " selected" : ""}`,
    "data-name": c.name,
    onclick: () => openCollection(c.name),
  }, el("span", { class: "name" }, c.name), el("span", { class: "meta" }, `${c.documents} indexed`))));
  if (!docs.collections.length) list.replaceChildren(el("li", { class: "muted" }, "No collections yet: create one."));
  const current = docs.collections.find((c) => c.name === docs.collection);
  $("#documents-title").textContent = docs.collection ?? "Select a collection";
  $("#collection-stats").textContent = current
    ? `${plural(current.documents, "indexed document")} · ${plural(current.units, "unit")}` : "";
  $("#delete-collection").disabled = !docs.collection;
  $("#upload").disabled = !docs.collection;
  // an upload's progress shows beside the collection it went to
  $("#upload-job").hidden = $("#upload-job").dataset.collection !== docs.collection;
}

async function createCollection(evt) {
  evt.preventDefault();
  const input = $("#new-collection-name");
  const name = input.value.trim();
  if (!name) return;
  try {
    await api("PUT", `/v1/collections/${encodeURIComponent(name)}`, { json: {} });
    input.value = "";
    toast(`Created collection ${name}.`, "ok");
    await loadCollections(name);
  } catch (err) {
    toast(`Not created: ${err.message}`, "error");
  }
}

async function deleteCollection() {
  const name = docs.collection;
  const confirmed = await confirmStep({
    title: `Delete collection ${name}?`,
    message: "Every document in it and its whole index are removed. This cannot be undone.",
    action: "Delete collection",
    typed: name,
  });
  if (!confirmed) return;
  try {
    const body = await api("DELETE", `/v1/collections/${encodeURIComponent(name)}`);
    toast(`Deleted collection ${body.deleted}: ${plural(body.documents_removed, "document")}, `
      + `${plural(body.units_removed, "unit")} removed.`, "ok");
    await loadCollections();
  } catch (err) {
    toast(`Not deleted: ${err.message}`, "error");
  }
}

async function loadDocuments() {
  const tbody = $("#documents-body");
  const { collection, after } = docs;
  $("#documents-prev").disabled = true;
  $("#documents-next").disabled = true;
  if (!collection) {
    tbody.replaceChildren(el("tr", {}, el("td", { colspan: 5, class: "muted" }, "Select or create a collection.")));
    $("#documents-page").textContent = "";
    return;
  }
  const query = new URLSearchParams({ limit: PAGE_SIZE });
  if (after) query.set("after", after);
  try {
    const body = await api("GET", `/v1/collections/${encodeURIComponent(collection)}/documents?${query}`);
    if (collection !== docs.collection || after !== docs.after) return;  // the user moved on meanwhile
    docs.next = body.next_after;
    const empty = after ? "No more documents." : "No documents yet: upload some files.";
    tbody.replaceChildren(...(body.documents.length ? body.documents.flatMap(renderDocumentRow)
      : [el("tr", {}, el("td", { colspan: 5, class: "muted" }, empty))]));
    const first = docs.previous.length * PAGE_SIZE;
    $("#documents-page").textContent = body.documents.length
      ? `${first + 1}–${first + body.documents.length}` : "";
    $("#documents-prev").disabled = !docs.previous.length;
    $("#documents-next").disabled = !docs.next;
  } catch (err) {
    tbody.replaceChildren(el("tr", {}, el("td", { colspan: 5, class: "muted" }, err.message)));
  }
}

function pageDocuments(forward) {
  if (forward) {
    docs.previous.push(docs.after);
    docs.after = docs.next;
  } else {
    docs.after = docs.previous.pop() ?? null;
  }
  loadDocuments();
}

function renderDocumentRow(doc) {
  const row = el("tr", { class: `document${doc.id === docs.openId ? " selected" : ""}`, "data-doc": doc.id },
    el("td", {}, el("button", { class: "link doc-link", onclick: () => openDocument(doc.id) }, doc.id)),
    el("td", {}, el("span", { class: `badge status-${doc.status}` }, doc.status)),
    el("td", { class: "num" }, doc.units),
    el("td", {}, when(doc.updated_at)),
    el("td", {}, el("button", { class: "secondary danger delete-doc", onclick: () => deleteDocument(doc.id) },
      "Delete")));
  if (!doc.error) return [row];
  return [row, el("tr", { class: "job-errors doc-error", "data-doc": doc.id },
    el("td", { colspan: 5 }, el("ul", { class: "errors" }, el("li", {}, doc.error))))];
}

async function openDocument(id) {
  try {
    const doc = await api("GET", `/v1/collections/${encodeURIComponent(docs.collection)}/documents/${docPath(id)}`);
    Object.assign(docs, { openId: id, level: "all", chunks: doc.chunks || [] });
    for (const row of document.querySelectorAll("#documents-body tr.document")) {
      row.classList.toggle("selected", row.dataset.doc === id);
    }
    $("#document-title").textContent = id;
    $("#document-title").classList.add("doc-id");
    $("#delete-document").hidden = false;
    const meta = doc.meta || {};
    const fields = [
      ["status", el("span", { class: `badge status-${doc.status}` }, doc.status)],
      ["units", doc.units], ["updated", when(doc.updated_at)],
      ["file", meta.filename], ["type", meta.original_content_type ?? meta.content_type],
      ["sha256", meta.sha256 && el("code", { title: meta.sha256 }, meta.sha256.slice(0, 16))],
      ["error", doc.error && el("span", { class: "error-text" }, doc.error)],
    ];
    $("#document-meta").replaceChildren(...fields.filter(([, value]) => value !== undefined && value !== null
      && value !== "").map(([name, value]) => el("tr", {}, el("th", {}, name), el("td", {}, value))));
    renderChunks();
  } catch (err) {
    toast(`Cannot open ${id}: ${err.message}`, "error");
  }
}

function closeDocument() {
  Object.assign(docs, { openId: null, level: "all", chunks: [] });
  $("#document-title").textContent = "Open a document to see its chunks";
  $("#document-title").classList.remove("doc-id");
  $("#delete-document").hidden = true;
  $("#document-meta").replaceChildren();
  $("#level-filter").replaceChildren();
  $("#chunks").replaceChildren();
}

function renderChunks() {
  // The server sends the units coarsest level first, so the chips come in that order too.
  const counts = {};
  for (const c of docs.chunks) counts[c.level] = (counts[c.level] || 0) + 1;
  const levels = Object.keys(counts);
  const chip = (level, count) => el("button", {
    class: `chip${docs.level === level ? " active" : ""}`,
    "data-level": level,
    onclick: () => { docs.level = level; renderChunks(); },
  }, `${level} `, el("b", {}, count));
  $("#level-filter").replaceChildren(chip("all", docs.chunks.length), ...levels.map((l) => chip(l, counts[l])));
  const shown = docs.chunks.filter((c) => docs.level === "all" || c.level === docs.level);
  $("#chunks").replaceChildren(...(shown.length ? shown.map((c) => el("li", {
    class: "chunk", "data-level": c.level, title: c.id,
  },
    el("div", { class: "chunk-head" },
      el("span", { class: `level level-${c.level}` }, c.level),
      c.meta?.position !== undefined ? el("span", { class: "muted" }, `#${c.meta.position + 1}`) : null),
    el("p", { class: "chunk-text" }, c.text)))
    : [el("li", { class: "muted" }, "No indexed units: the document is not indexed (yet).")]));
}

async function deleteDocument(id) {
  const collection = docs.collection;
  const confirmed = await confirmStep({
    title: `Delete ${id}?`,
    message: `The document and all its indexed units are removed from ${collection}.`,
    action: "Delete document",
  });
  if (!confirmed) return;
  try {
    const body = await api("DELETE", `/v1/collections/${encodeURIComponent(collection)}/documents/${docPath(id)}`);
    toast(`Deleted ${body.deleted} (${plural(body.units_removed, "unit")} removed).`, "ok");
    if (docs.openId === id) closeDocument();
    await loadCollections();
  } catch (err) {
    toast(`Not deleted: ${err.message}`, "error");
  }
}

async function upload(evt) {
  evt.preventDefault();
  const input = $("#upload-files");
  const collection = docs.collection;
  if (!collection || !input.files.length) {
    toast("Choose a collection and one or more files.", "error");
    return;
  }
  const form = new FormData();
  for (const file of input.files) form.append("files", file, file.name);
  $("#upload").disabled = true;
  try {
    const body = await api("POST", `/v1/collections/${encodeURIComponent(collection)}/files`, { form });
    input.value = "";
    toast(`Uploaded ${plural(body.files.length, "file")}: job ${shortId(body.job_id)}.`, "ok");
    followedJob = body.job_id;
    followUpload(collection, body.job_id);
    loadCollections();  // the new documents are listed as queued at once
  } catch (err) {
    toast(`Upload refused: ${err.message}`, "error");
  } finally {
    $("#upload").disabled = !docs.collection;
  }
}

// Polls the upload's job until it ends, then shows the documents it made.
async function followUpload(collection, jobId) {
  clearTimeout(uploadTimer);
  const box = $("#upload-job");
  box.dataset.collection = collection;
  box.hidden = collection !== docs.collection;
  let job;
  try {
    job = await api("GET", `/v1/jobs/${encodeURIComponent(jobId)}`);
  } catch (err) {
    if (jobId === followedJob) {
      box.replaceChildren(el("span", { class: "error-text" }, `Job ${shortId(jobId)}: ${err.message}`));
    }
    return;
  }
  if (jobId !== followedJob) return;
  const finished = job.done + job.failed + (job.skipped || 0);
  box.dataset.job = job.job_id;
  box.dataset.status = job.status;
  box.replaceChildren(
    el("div", { class: "upload-head" },
      el("span", {}, "Upload job "), jobIdCode(job.job_id), el("span", {}, ` into ${collection}`),
      el("span", { class: `badge status-${job.status}` }, job.status),
      el("small", { class: "muted" }, `${finished}/${job.total} · ${job.done} done · ${job.failed} failed`),
      el("a", { href: "#jobs" }, "all jobs")),
    job.errors?.length ? jobErrors(job) : null);
  if (jobActive(job)) {
    uploadTimer = setTimeout(() => followUpload(collection, jobId), 1000);
  } else if (collection === docs.collection) {
    await loadCollections();
  }
}

// ---------- jobs ----------

let jobsTimer;

async function loadJobs() {
  clearTimeout(jobsTimer);
  const tbody = $("#jobs-body");
  let active = false;
  try {
    const { jobs } = await api("GET", "/v1/jobs");
    if (!jobs.length) {
      tbody.replaceChildren(el("tr", {}, el("td", { colspan: 6, class: "muted" }, "No jobs yet.")));
    } else {
      tbody.replaceChildren(...jobs.flatMap(renderJob));
    }
    active = jobs.some(jobActive);
  } catch (err) {
    tbody.replaceChildren(el("tr", {}, el("td", { colspan: 6, class: "muted" }, err.message)));
  }
  // Poll while something is moving and the jobs page is visible; stop otherwise.
  if ($("#auto-refresh").checked && !$("#page-jobs").hidden) jobsTimer = setTimeout(loadJobs, active ? 1500 : 5000);
}

function renderJob(job) {
  const finished = (job.done || 0) + (job.failed || 0) + (job.skipped || 0);
  const pct = job.total ? Math.round((finished / job.total) * 100) : 0;
  const cancellable = jobActive(job);
  const row = el("tr", { class: "job", "data-job": job.job_id },
    el("td", {}, jobIdCode(job.job_id)),
    el("td", {}, job.collection),
    el("td", {}, el("span", { class: `badge status-${job.status}` }, job.status)),
    el("td", { class: "progress-cell" },
      el("div", { class: "progress" },
        el("span", { class: "ok", style: `width:${job.total ? ((job.done || 0) / job.total) * 100 : 0}%` }),
        el("span", { class: "skip", style: `width:${job.total ? ((job.skipped || 0) / job.total) * 100 : 0}%` }),
        el("span", { class: "fail", style: `width:${job.total ? ((job.failed || 0) / job.total) * 100 : 0}%` })),
      el("small", {}, `${finished}/${job.total} (${pct}%) · ${job.done} done · ${job.skipped || 0} skipped · ${job.failed} failed`)),
    el("td", {}, when(job.created_at)),
    el("td", {}, cancellable ? el("button", { class: "secondary danger", onclick: () => cancelJob(job.job_id) }, "Cancel") : null));
  const rows = [row];
  if (job.errors?.length) rows.push(el("tr", { class: "job-errors" }, el("td", { colspan: 6 }, jobErrors(job))));
  return rows;
}

function jobErrors(job) {
  return el("ul", { class: "errors" }, ...job.errors.map((e) => el("li", {}, el("code", {}, e.doc_id), " ", e.error)));
}

function jobActive(job) {
  return job.status === "queued" || job.status === "running";
}

async function cancelJob(id) {
  try {
    await api("POST", `/v1/jobs/${encodeURIComponent(id)}/cancel`);
    toast(`Cancel requested for ${shortId(id)}.`, "ok");
  } catch (err) {
    toast(`Cancel failed: ${err.message}`, "error");
  }
  loadJobs();
}

// ---------- wiring ----------

function init() {
  const keyInput = $("#api-key");
  keyInput.value = localStorage.getItem(KEY_STORAGE) || "";
  keyInput.addEventListener("change", () => {
    if (keyInput.value) localStorage.setItem(KEY_STORAGE, keyInput.value);
    else localStorage.removeItem(KEY_STORAGE);
    toast(keyInput.value ? "API key stored in this browser." : "API key cleared.", "ok");
    showTab(location.hash.slice(1));
  });
  for (const tab of document.querySelectorAll(".tab")) {
    tab.addEventListener("click", () => { location.hash = tab.dataset.tab; });
  }
  window.addEventListener("hashchange", () => showTab(location.hash.slice(1)));
  const area = $("#yaml-editor");
  area.addEventListener("input", onEdit);
  area.addEventListener("scroll", syncScroll);
  area.addEventListener("keydown", (evt) => {
    // Tab inserts two spaces (YAML indentation) instead of leaving the editor.
    if (evt.key === "Tab") {
      evt.preventDefault();
      area.setRangeText("  ", area.selectionStart, area.selectionEnd, "end");
      onEdit();
    }
  });
  $("#save-pipeline").addEventListener("click", savePipeline);
  $("#new-pipeline").addEventListener("click", newPipeline);
  $("#query-form").addEventListener("submit", ask);
  $("#refresh-jobs").addEventListener("click", loadJobs);
  $("#auto-refresh").addEventListener("change", loadJobs);
  $("#new-collection-form").addEventListener("submit", createCollection);
  $("#delete-collection").addEventListener("click", deleteCollection);
  $("#upload-form").addEventListener("submit", upload);
  $("#documents-prev").addEventListener("click", () => pageDocuments(false));
  $("#documents-next").addEventListener("click", () => pageDocuments(true));
  $("#delete-document").addEventListener("click", () => deleteDocument(docs.openId));
  $("#confirm-input").addEventListener("input", () => {
    $("#confirm-ok").disabled = $("#confirm-input").value !== $("#confirm-expected").textContent;
  });
  showTab(location.hash.slice(1));
}

init();
