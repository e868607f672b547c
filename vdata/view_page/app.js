// vdata view: one page, routed by the URL's hash; every row, reject and finding comes from
// the local server a page at a time. Text from datasets is set as text, never as HTML.
"use strict";

const main = document.getElementById("main");
let summary = null;

function h(tag, attrs, ...children) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs || {})) {
    if (value === null || value === undefined || value === false) continue;
    if (key.startsWith("on")) node.addEventListener(key.slice(2), value);
    else if (key === "class") node.className = value;
    else node.setAttribute(key, value === true ? "" : value);
  }
  for (const child of children.flat()) {
    if (child === null || child === undefined || child === false) continue;
    node.append(child instanceof Node ? child : String(child));
  }
  return node;
}

async function get(url) {
  const response = await fetch(url);
  if (!response.ok) throw new Error(`${url}: ${response.status}`);
  return response.json();
}

function clock(seconds) {
  if (seconds === null || seconds === undefined) return "?";
  if (typeof seconds !== "number") return String(seconds);  // NaN or Infinity, sent as text
  const whole = Math.max(0, seconds);
  const m = Math.floor(whole / 60), s = whole - 60 * m;
  return `${String(m).padStart(2, "0")}:${s.toFixed(1).padStart(4, "0")}`;
}

function route() {
  const [path, query] = location.hash.replace(/^#/, "").split("?");
  return { parts: path.split("/").filter(Boolean), params: new URLSearchParams(query || "") };
}

function setNav(name) {
  for (const id of ["rows", "rejects", "audit"]) {
    document.getElementById(`nav-${id}`).classList.toggle("on", id === name);
  }
}

async function render() {
  if (!summary) {
    summary = await get("/api/summary");
    document.getElementById("where").textContent = `${summary.path} — ${summary.read_as}`;
    document.getElementById("nav-rejects").textContent = `Rejects (${summary.rejects})`;
    if (!summary.has_audit) document.getElementById("nav-audit").textContent = "Plots";
  }
  const { parts, params } = route();
  main.replaceChildren(h("p", { class: "muted" }, "Loading…"));
  try {
    if (parts[0] === "row") await showRow(Number(parts[1]));
    else if (parts[0] === "rejects") await showRejects(params);
    else if (parts[0] === "audit") await showAudit();
    else await showRows(params);
  } catch (error) {
    main.replaceChildren(h("p", { class: "error" }, String(error)));
  }
}

// ---------------------------------------------------------------- rows

const FACETS = { split: "Split", category: "Category", problem_type: "Problem type", recipe: "Recipe" };

async function showRows(params) {
  setNav("rows");
  const offset = Number(params.get("offset") || 0);
  const query = new URLSearchParams(params);
  query.set("offset", offset);
  query.set("limit", 50);
  const page = await get(`/api/rows?${query}`);
  const go = (changes) => {
    const next = new URLSearchParams(params);
    for (const [key, value] of Object.entries(changes)) {
      if (value === "" || value === null) next.delete(key); else next.set(key, value);
    }
    if (!("offset" in changes)) next.delete("offset");
    location.hash = `#/rows?${next}`;
  };
  const filters = h("aside", { id: "filters" });
  for (const [name, label] of Object.entries(FACETS)) {
    const select = h("select", { id: `f-${name}`, onchange: (e) => go({ [name]: e.target.value }) },
      h("option", { value: "" }, `all (${page.total})`));
    for (const [value, count] of page.counts[name]) {
      const shown = value === null ? "(none)" : value;
      select.append(h("option", { value: shown, selected: params.get(name) === shown }, `${shown} (${count})`));
    }
    filters.append(h("label", { for: `f-${name}` }, label), select);
  }
  const range = (name, label) => [
    h("label", { for: `f-${name}` }, label),
    h("input", { id: `f-${name}`, type: "number", step: "0.05", min: 0, max: 1, value: params.get(name) || "",
      onchange: (e) => go({ [name]: e.target.value }) }),
  ];
  filters.append(...range("difficulty_min", "Pass rate at least"), ...range("difficulty_max", "Pass rate at most"));
  filters.append(h("label", { for: "f-q" }, "Search question and options"),
    h("input", { id: "f-q", type: "search", value: params.get("q") || "", placeholder: "text…",
      onchange: (e) => go({ q: e.target.value }) }));

  const body = h("tbody");
  for (const row of page.rows) {
    body.append(h("tr", { class: "link", "data-number": row.number, onclick: () => { location.hash = `#/row/${row.number}`; } },
      h("td", {}, row.number), h("td", {}, row.split ?? ""), h("td", {}, row.category ?? ""),
      h("td", {}, row.problem_type ?? ""), h("td", {}, row.problem ?? ""), h("td", {}, row.solution ?? ""),
      h("td", {}, typeof row.pass_rate === "number" ? row.pass_rate.toFixed(2) : String(row.pass_rate ?? ""))));
  }
  const last = Math.min(offset + page.rows.length, page.total);
  const pager = h("div", { class: "pager" },
    h("button", { id: "prev", disabled: offset === 0, onclick: () => go({ offset: Math.max(0, offset - 50) }) }, "‹ previous"),
    h("span", { id: "shown" }, page.total ? `rows ${offset + 1}–${last} of ${page.total}` : "no rows match"),
    h("button", { id: "next", disabled: last >= page.total, onclick: () => go({ offset: offset + 50 }) }, "next ›"));
  const table = h("table", { id: "rows" },
    h("thead", {}, h("tr", {}, ["#", "split", "category", "type", "question", "answer", "pass rate"].map((t) => h("th", {}, t)))),
    body);
  main.replaceChildren(h("div", { class: "layout" }, filters, h("section", {}, pager, table)));
}

// ---------------------------------------------------------------- one row

function goldLetters(solution) {
  const match = /<answer>([\s\S]*?)<\/answer>/.exec(solution || "");
  const text = (match ? match[1] : solution || "").trim();
  return new Set(text.length && /^[A-Z](\s*[,;]?\s*[A-Z])*$/.test(text) ? text.match(/[A-Z]/g) : []);
}

function playable(src, attrs) {
  // a video the browser cannot decode (an empty or broken file, a codec it lacks) says so
  const video = h("video", { controls: true, preload: "metadata", src, ...attrs });
  video.addEventListener("error", () => {
    video.replaceWith(h("p", { class: "warning video-error" }, `this video does not play here (${src}): the file is empty, broken or in a codec the browser lacks`));
  });
  return video;
}

function timeButton(video, start, end) {
  return h("button", { class: "time", onclick: () => seek(video, start) }, `${clock(start)}–${clock(end)}`);
}

function seek(video, seconds) {
  if (!video) return;
  video.currentTime = seconds;
  video.play().catch(() => {});
}

function timeline(video, items, duration, window) {
  const bar = h("div", { class: "timeline", id: "evidence-timeline" });
  if (!duration) return bar;
  const pct = (s) => `${Math.max(0, Math.min(100, (100 * s) / duration))}%`;
  if (window && window.end_s) {
    bar.append(h("div", { class: "window", style: `left:${pct(window.start_s)};width:calc(${pct(window.end_s)} - ${pct(window.start_s)})` }));
  }
  for (const item of items) {
    bar.append(h("div", { class: "span", title: item.text || "",
      style: `left:${pct(item.start_s)};width:max(3px, calc(${pct(item.end_s)} - ${pct(item.start_s)}))`,
      onclick: () => seek(video, item.start_s) }));
  }
  return bar;
}

function keepInWindow(video, window) {
  const start = window.start_s || 0, end = window.end_s;
  video.addEventListener("loadedmetadata", () => { if (video.currentTime < start) video.currentTime = start; });
  video.addEventListener("timeupdate", () => {
    if (end && video.currentTime >= end) { video.pause(); video.currentTime = end; }
  });
  video.addEventListener("play", () => {
    if (video.currentTime < start || (end && video.currentTime >= end)) video.currentTime = start;
  });
}

async function showRow(number) {
  setNav("rows");
  const found = await get(`/api/row/${number}`);
  const row = found.row, window = found.window;
  let video = null;
  const left = h("div", {});
  if (found.video) {
    const fragment = window.end_s ? `#t=${window.start_s},${window.end_s}` : `#t=${window.start_s}`;
    video = playable(found.video + fragment, { id: "player" });
    keepInWindow(video, window);
    left.append(video, h("p", { class: "muted", id: "window" },
      `segment ${clock(window.start_s)}–${clock(window.end_s)} of ${clock((row.video || {}).duration_s)}`));
  } else {
    left.append(h("p", { class: "warning", id: "no-video" }, found.video_missing || "this row names no video"));
  }
  const gold = goldLetters(row.solution);
  const options = h("ol", { class: "options", type: "A" });
  (row.options || []).forEach((option, i) => {
    const letter = String.fromCharCode(65 + i);
    options.append(h("li", { class: gold.has(letter) ? "gold" : null, "data-letter": letter }, option.replace(/^[A-Z][.)]\s*/, "")));
  });
  const right = h("div", {},
    h("div", { class: "card" },
      h("div", { class: "muted" }, `#${number} · ${row.id} · ${row.split ?? "no split"} · ${row.problem_type ?? ""} · ${row.category ?? ""} · ${row.recipe ?? ""}`),
      h("h2", { id: "question" }, row.problem ?? ""),
      (row.options || []).length ? options : null,
      h("p", {}, h("strong", {}, "Answer: "), h("span", { id: "solution" }, row.solution ?? "")),
      row.difficulty ? h("p", { id: "difficulty" }, `pass rate ${row.difficulty.pass_rate} over ${row.difficulty.n_rollouts} rollouts (${row.difficulty.model ?? "?"})`) : null));

  const evidence = row.evidence || [];
  const duration = (row.video || {}).duration_s;
  if (evidence.length) {
    left.append(h("h3", {}, "Evidence"), timeline(video, evidence, duration, window),
      h("ul", { id: "evidence" }, evidence.map((e) => h("li", {}, timeButton(video, e.start_s, e.end_s), " ", e.text))));
  }
  if (found.trace) {
    right.append(h("div", { class: "card", id: "trace" }, h("h3", {}, "Trace"),
      found.trace.map((b) => h("div", { class: "block" }, timeButton(video, b.start_s, b.end_s), " ",
        h("em", {}, b.caption), h("div", {}, b.think)))));
  } else if (row.process) {
    right.append(h("div", { class: "card" }, h("h3", {}, "Reasoning"), h("pre", { id: "process" }, row.process)));
  }
  const stream = row.stream || {};
  if ((stream.text_stream || []).length || (stream.qa_stream || []).length) {
    const items = [
      ...(stream.text_stream || []).map((t) => ({ start_s: t.start_s, end_s: t.end_s, text: t.text, kind: "thought" })),
      ...(stream.qa_stream || []).map((q) => ({ start_s: q.start_s, end_s: q.end_s, text: `Q: ${q.question} — A: ${q.answer}`, kind: "qa" })),
    ].sort((a, b) => a.start_s - b.start_s);
    right.append(h("div", { class: "card", id: "stream" }, h("h3", {}, "Stream"), timeline(video, items, duration, window),
      items.map((i) => h("div", { class: "block" }, timeButton(video, i.start_s, i.end_s), ` ${i.kind}: `, i.text))));
  }
  right.append(h("div", { class: "card" }, h("h3", {}, "Provenance"),
    h("pre", {}, JSON.stringify({ data_source: row.data_source, provenance: row.provenance, meta: row.meta, path: row.path }, null, 1))));
  main.replaceChildren(
    h("p", {}, h("a", { href: "#/rows" }, "‹ all rows"), " ",
      number > 0 ? h("a", { href: `#/row/${number - 1}` }, "‹ previous") : null, " ",
      number + 1 < summary.rows ? h("a", { href: `#/row/${number + 1}`, id: "next-row" }, "next ›") : null),
    h("div", { class: "row-grid" }, left, right));
}

// ---------------------------------------------------------------- rejects

async function showRejects(params) {
  setNav("rejects");
  const stage = params.get("stage") || "", reason = params.get("reason") || "";
  const offset = Number(params.get("offset") || 0);
  const query = new URLSearchParams({ stage, reason, offset, limit: 20 });
  const page = await get(`/api/rejects?${query}`);
  if (!page.groups.length) {
    main.replaceChildren(h("p", { id: "no-rejects" }, summary.is_run ? "This run rejected nothing." : "Rejects are kept in a run directory; this path is not one."));
    return;
  }
  const groups = h("table", { id: "reject-groups" }, h("thead", {}, h("tr", {}, ["stage", "reason", "rejects"].map((t) => h("th", {}, t)))),
    h("tbody", {}, page.groups.map((g) => h("tr", { class: "link", onclick: () => { location.hash = `#/rejects?${new URLSearchParams({ stage: g.stage, reason: g.reason })}`; } },
      h("td", {}, g.stage), h("td", {}, g.reason), h("td", {}, g.count)))));
  const list = h("section", { id: "reject-list" }, h("h3", {}, stage ? `${stage}: ${reason} (${page.total})` : `all rejects (${page.total})`));
  for (const item of page.rejects) {
    list.append(h("div", { class: "card reject" },
      h("div", {}, h("strong", {}, `${item.stage} · ${item.reason}`), " ", h("span", { class: "muted" }, item.input_ref ?? "")),
      h("p", {}, item.detail ?? ""),
      item.video ? playable(item.video, { style: "max-width:420px" }) : null,
      h("details", {}, h("summary", {}, "payload"), h("pre", {}, JSON.stringify(item.payload, null, 1)))));
  }
  const last = offset + page.rejects.length;
  const more = new URLSearchParams({ stage, reason, offset: offset + 20 });
  if (last < page.total) list.append(h("a", { href: `#/rejects?${more}` }, "more ›"));
  main.replaceChildren(h("div", { class: "layout" }, h("aside", {}, groups), list));
}

// ---------------------------------------------------------------- audit and plots

async function showAudit() {
  setNav("audit");
  const parts = [];
  if (summary.has_audit) {
    const report = await get("/api/audit");
    const body = h("tbody");
    for (const finding of report.findings || []) {
      body.append(h("tr", {},
        h("td", { class: finding.severity }, finding.severity), h("td", {}, finding.code), h("td", {}, finding.count),
        h("td", {}, finding.title),
        h("td", {}, finding.examples.map((e) => h("div", {},
          e.number !== null ? h("a", { href: `#/row/${e.number}` }, e.ref) : e.ref, `: ${e.what}`)))));
    }
    parts.push(h("h2", {}, `Audit: ${report.rows} rows`),
      (report.findings || []).length
        ? h("table", { id: "findings" }, h("thead", {}, h("tr", {}, ["severity", "finding", "rows", "what", "examples"].map((t) => h("th", {}, t)))), body)
        : h("p", { id: "findings" }, "No problems found."),
      h("ul", {}, (report.notes || []).map((n) => h("li", { class: "muted" }, `not checked: ${n}`))));
  }
  if (summary.plots.length) {
    parts.push(h("h2", {}, "The card's plots"),
      h("div", { class: "plots" }, summary.plots.map((p) => h("img", { src: `/files/${p.split("/").map(encodeURIComponent).join("/")}`, alt: p }))));
  }
  main.replaceChildren(...(parts.length ? parts : [h("p", {}, "No audit or plots for this path.")]));
}

window.addEventListener("hashchange", render);
render();
