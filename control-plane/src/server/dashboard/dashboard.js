// The Outrigger dashboard: polls this port's /api/stats, /api/stats/timeline and
// /api/status, and draws tables, the topology and the latency charts itself (SVG).
// Every name from the mesh goes into the page through textContent, never as markup.
"use strict";

const POLL_MS = 2000;
const SVG = "http://www.w3.org/2000/svg";
// Thresholds that colour a number: at or past `warn` it is amber, past `bad` red.
const LATENCY_MS = { warn: 100, bad: 500 };
const SUCCESS = { warn: 0.995, bad: 0.95 };

function el(tag, text, cls) {
  const node = document.createElement(tag);
  if (text !== undefined && text !== null) node.textContent = String(text);
  if (cls) node.className = cls;
  return node;
}

function svg(tag, attrs, text) {
  const node = document.createElementNS(SVG, tag);
  for (const [k, v] of Object.entries(attrs || {})) node.setAttribute(k, String(v));
  if (text !== undefined) node.textContent = String(text);
  return node;
}

function fmtRate(r) {
  if (r === null || r === undefined) return "–";
  return r >= 100 ? r.toFixed(0) : r >= 10 ? r.toFixed(1) : r.toFixed(2);
}
function fmtPct(p) {
  if (p === null || p === undefined) return "–";
  return (p * 100).toFixed(p >= 0.999 || p < 0.9 ? 1 : 2) + "%";
}
function fmtMs(ms) {
  if (ms === null || ms === undefined) return "–";
  if (ms >= 1000) return (ms / 1000).toFixed(2) + " s";
  if (ms >= 10) return ms.toFixed(0) + " ms";
  if (ms >= 1) return ms.toFixed(1) + " ms";
  return ms.toFixed(2) + " ms";
}
function latencyClass(ms) {
  if (ms === null || ms === undefined) return "";
  return ms >= LATENCY_MS.bad ? "bad" : ms >= LATENCY_MS.warn ? "warn" : "ok";
}
function successClass(rate) {
  if (rate === null || rate === undefined) return "";
  return rate < SUCCESS.bad ? "bad" : rate < SUCCESS.warn ? "warn" : "ok";
}
// The worse of the success rate's and the p99's colour: how a row or an edge is marked.
function health(g) {
  const order = ["", "ok", "warn", "bad"];
  const a = successClass(g.success_rate), b = latencyClass(g.p99_ms);
  return order.indexOf(a) > order.indexOf(b) ? a : b;
}

function cell(row, text, cls) {
  const td = el("td", text, cls);
  row.appendChild(td);
  return td;
}

function goldenCells(row, g) {
  cell(row, fmtRate(g.rate), "num");
  cell(row, fmtPct(g.success_rate), "num " + successClass(g.success_rate));
  cell(row, fmtMs(g.p50_ms), "num " + latencyClass(g.p50_ms));
  cell(row, fmtMs(g.p99_ms), "num " + latencyClass(g.p99_ms));
  cell(row, fmtMs(g.p999_ms), "num " + latencyClass(g.p999_ms));
}

function fill(tbodyParent, rows) {
  const tbody = document.querySelector(tbodyParent + " tbody");
  tbody.replaceChildren(...rows);
}

function renderServices(stats) {
  const rows = stats.services.map((s) => {
    const tr = el("tr", null, health(s));
    tr.dataset.service = s.service;
    tr.dataset.requests = String(s.requests);
    cell(tr, s.service);
    goldenCells(tr, s);
    cell(tr, fmtMs(s.max_ms), "num muted");
    return tr;
  });
  fill("#services", rows);
  document.getElementById("services-empty").hidden = rows.length > 0;
}

function renderEdges(stats) {
  const rows = stats.edges.map((e) => {
    const tr = el("tr", null, health(e));
    tr.dataset.caller = e.caller;
    tr.dataset.service = e.service;
    tr.dataset.requests = String(e.requests);
    cell(tr, e.caller);
    cell(tr, e.service);
    goldenCells(tr, e);
    cell(tr, e.side === "client" ? "caller's sidecar" : "callee's sidecar", "muted");
    return tr;
  });
  fill("#edges", rows);
  drawTopology(stats.edges);
}

// Callers in a column on the left, services on the right, one line per edge.
function drawTopology(edges) {
  const box = document.getElementById("topology");
  const callers = [...new Set(edges.map((e) => e.caller))].sort();
  const services = [...new Set(edges.map((e) => e.service))].sort();
  const width = 640, rowH = 40, nodeW = 170;
  const height = Math.max(callers.length, services.length, 1) * rowH + 10;
  box.setAttribute("viewBox", `0 0 ${width} ${height}`);
  box.setAttribute("height", String(height));
  const nodes = [];
  const y = (list, name) => 10 + list.indexOf(name) * rowH + (height - 10 - list.length * rowH) / 2;
  const colour = { ok: "#1f9d55", warn: "#d98e04", bad: "#d64545", "": "#9aa3b2" };
  // Thicker lines carry more requests; the colour is the edge's health. The numbers are
  // in the table below and in each line's tooltip.
  const busiest = Math.max(1, ...edges.map((e) => e.rate));
  for (const e of edges) {
    const y1 = y(callers, e.caller) + 14, y2 = y(services, e.service) + 14;
    const x1 = nodeW + 4, x2 = width - nodeW - 4;
    const line = svg("path", {
      d: `M${x1},${y1} C${(x1 + x2) / 2},${y1} ${(x1 + x2) / 2},${y2} ${x2},${y2}`,
      fill: "none", stroke: colour[health(e)],
      "stroke-width": (1.5 + 4.5 * Math.sqrt(e.rate / busiest)).toFixed(1),
      "stroke-linecap": "round",
    });
    line.appendChild(svg("title", {},
      `${e.caller} → ${e.service}: ${fmtRate(e.rate)}/s, ${fmtPct(e.success_rate)} success, p99 ${fmtMs(e.p99_ms)}`));
    nodes.push(line);
  }
  const node = (x, yy, name) => {
    nodes.push(svg("rect", { x, y: yy, width: nodeW, height: 28, rx: 6, class: "node" }));
    const label = name.length > 24 ? name.slice(0, 23) + "…" : name;
    const text = svg("text", { x: x + 8, y: yy + 18 }, label);
    text.appendChild(svg("title", {}, name));
    nodes.push(text);
  };
  callers.forEach((c) => node(2, y(callers, c), c));
  services.forEach((s) => node(width - nodeW - 2, y(services, s), s));
  box.replaceChildren(...nodes);
}

// One small chart per service: p50 and p99 of each 10 s window over the last 15 minutes.
function renderCharts(timeline) {
  const holder = document.getElementById("charts");
  // The server always sends the whole ring (90 windows), measured or not.
  const windows = timeline.services.length ? timeline.services[0].points.length : 90;
  const span = timeline.window_secs * windows;
  document.getElementById("chart-span").textContent =
    `last ${span >= 180 ? Math.round(span / 60) + " min" : Math.round(span) + " s"}, ${timeline.window_secs} s windows`;
  const charts = timeline.services.map((s) => {
    const card = el("div", null, "chart");
    card.dataset.service = s.service;
    const title = el("h3");
    title.appendChild(el("span", s.service));
    const last = [...s.points].reverse().find((p) => p);
    title.appendChild(el("span", last ? `p99 ${fmtMs(last.p99_ms)}` : "idle", "muted"));
    card.appendChild(title);
    card.appendChild(chart(s.points, timeline.window_secs));
    return card;
  });
  if (charts.length === 0) charts.push(el("p", "No service has been measured in the last 15 minutes.", "muted"));
  holder.replaceChildren(...charts);
}

function chart(points, windowSecs) {
  const W = 320, H = 110, left = 46, bottom = 16, right = 6;
  const root = svg("svg", { viewBox: `0 0 ${W} ${H}` });
  const values = points.flatMap((p) => (p ? [p.p50_ms || 0, p.p99_ms || 0] : []));
  const top = niceCeiling(Math.max(0.1, ...values));
  const x = (i) => left + (i / Math.max(1, points.length - 1)) * (W - left - right);
  const yv = (v) => 6 + (1 - v / top) * (H - bottom - 6);
  for (const v of [0, top / 2, top]) {
    root.appendChild(svg("line", { x1: left, x2: W - right, y1: yv(v), y2: yv(v), class: "axis" }));
    root.appendChild(svg("text", { x: left - 6, y: yv(v) + 4, "text-anchor": "end" }, v === 0 ? "0" : fmtMs(v)));
  }
  // Three ticks back in time, in minutes (or seconds, for short windows).
  const span = points.length * windowSecs;
  for (const part of [1, 2 / 3, 1 / 3]) {
    const secs = span * part;
    const i = Math.max(0, points.length - 1 - secs / windowSecs);
    const label = span >= 180 ? `-${Math.round(secs / 60)}m` : `-${Math.round(secs)}s`;
    root.appendChild(svg("text", { x: x(i), y: H - 4, "text-anchor": part === 1 ? "start" : "middle" }, label));
  }
  root.appendChild(svg("text", { x: W - right, y: H - 4, "text-anchor": "end" }, "now"));
  for (const [key, cls] of [["p50_ms", "p50"], ["p99_ms", "p99"]]) {
    let d = "";
    points.forEach((p, i) => {
      if (!p || p[key] === null) return;
      const joined = i > 0 && points[i - 1] && points[i - 1][key] !== null;
      d += `${joined ? "L" : "M"}${x(i).toFixed(1)},${yv(p[key]).toFixed(1)} `;
      // A window with no measured neighbour is a dot, not an invisible zero-length line.
      const alone = !joined && !(points[i + 1] && points[i + 1][key] !== null);
      if (alone) root.appendChild(svg("circle", { cx: x(i), cy: yv(p[key]), r: 2.5, class: cls + " dot" }));
    });
    if (d) root.appendChild(svg("path", { d, class: cls }));
  }
  return root;
}

function niceCeiling(v) {
  const step = Math.pow(10, Math.floor(Math.log10(v)));
  for (const m of [1, 2, 5, 10]) if (m * step >= v) return m * step;
  return 10 * step;
}

function bar(used, label) {
  const span = el("span");
  const b = el("span", null, "bar " + (used >= 0.9 ? "bad" : used >= 0.6 ? "warn" : ""));
  const inner = el("span");
  inner.style.width = Math.min(100, Math.max(0, used * 100)).toFixed(0) + "%";
  b.appendChild(inner);
  span.appendChild(b);
  span.appendChild(document.createTextNode(label));
  return span;
}

function renderResilience(stats) {
  const rows = stats.resilience.map((r) => {
    const tr = el("tr");
    const open = r.circuits.some((c) => c.state !== "closed");
    const rejected = r.bulkhead_rejected + r.budget_exhausted;
    tr.className = open || rejected > 0 ? "bad" : r.retries > 0 ? "warn" : "ok";
    const who = cell(tr, r.caller);
    who.title = r.proxy_id;
    cell(tr, r.service);
    const eps = cell(tr, null);
    for (const c of r.circuits) {
      const pill = el("span", c.endpoint, "state " + c.state);
      pill.title = c.state;
      eps.appendChild(pill);
    }
    if (r.circuits.length === 0) eps.textContent = "–";
    const limit = Math.max(1, r.bulkhead_limit);
    cell(tr, null).appendChild(bar(r.bulkhead_in_flight / limit,
      `${r.bulkhead_in_flight}/${r.bulkhead_limit}` + (r.bulkhead_pending ? ` +${r.bulkhead_pending} queued` : "")));
    cell(tr, null).appendChild(bar(r.retry_budget_used, fmtPct(r.retry_budget_used)));
    cell(tr, r.retries, "num");
    cell(tr, rejected, "num " + (rejected > 0 ? "bad" : ""));
    return tr;
  });
  fill("#resilience", rows);
  document.getElementById("resilience-empty").hidden = rows.length > 0;
}

function renderStatus(status) {
  const pill = document.getElementById("mesh-state");
  pill.textContent = `config v${status.version} · ` + (status.converged ? "converged" : "not converged");
  pill.className = "pill " + (status.converged ? "ok" : "bad");
  const errors = status.config_errors || [];
  if (errors.length > 0) pill.className = "pill warn";
  const rows = status.proxies.map((p) => {
    const current = p.applied_version === status.version;
    const tr = el("tr", null, !p.connected ? "" : current ? "ok" : "bad");
    cell(tr, p.proxy_id);
    cell(tr, p.identity);
    cell(tr, p.service || "–");
    cell(tr, p.applied_version, "num");
    cell(tr, !p.connected ? "disconnected" : current ? "current" : "behind", current ? "ok" : "bad");
    return tr;
  });
  fill("#proxies", rows);
  document.getElementById("config-errors").replaceChildren(...errors.map((e) => el("li", e)));
}

async function getJson(path) {
  const response = await fetch(path, { cache: "no-store" });
  if (!response.ok) throw new Error(`${path}: ${response.status}`);
  return response.json();
}

let timer = null;
async function refresh() {
  clearTimeout(timer);
  // The next poll is due however this one ends; a failure to draw is thrown on (the
  // browser reports it), a failure to fetch is shown on the page.
  timer = setTimeout(refresh, POLL_MS);
  const windowName = document.getElementById("window").value;
  let stats, timeline, status;
  try {
    [stats, timeline, status] = await Promise.all([
      getJson("/api/stats?window=" + encodeURIComponent(windowName)),
      getJson("/api/stats/timeline"),
      getJson("/api/status"),
    ]);
  } catch (error) {
    document.getElementById("updated").textContent = "cannot reach the control plane: " + error.message;
    return;
  }
  renderServices(stats);
  renderEdges(stats);
  renderResilience(stats);
  renderCharts(timeline);
  renderStatus(status);
  document.getElementById("updated").textContent = "updated " + new Date().toLocaleTimeString();
}

document.getElementById("window").addEventListener("change", refresh);
refresh();
