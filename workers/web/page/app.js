// kaizen-stream page: sessions, a session's timeline, cost per day and model, tool failure
// rates. Plain DOM and SVG, no library, no network beyond this worker. A bearer token, when
// the worker wants one, comes from the page address: /#token=...
"use strict";

const TOKEN = new URLSearchParams(location.hash.slice(1)).get("token");
const SVG = "http://www.w3.org/2000/svg";
const PALETTE = ["#1e88e5", "#43a047", "#fb8c00", "#8e24aa", "#00acc1", "#e53935", "#6d4c41"];

async function getJSON(path) {
  const headers = TOKEN ? { Authorization: "Bearer " + TOKEN } : {};
  const resp = await fetch(path, { headers });
  if (!resp.ok) throw new Error(path + ": HTTP " + resp.status);
  return resp.json();
}

function el(tag, attrs, text) {
  const node = tag.startsWith("svg:")
    ? document.createElementNS(SVG, tag.slice(4))
    : document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) node.setAttribute(k, v);
  if (text !== undefined) node.textContent = text;
  return node;
}

function svg(width, height) {
  return el("svg:svg", { viewBox: `0 0 ${width} ${height}`, role: "img" });
}

function fmtTime(ms) {
  return ms ? new Date(ms).toISOString().replace("T", " ").slice(0, 19) : "";
}

function renderSessions(rows, onPick) {
  const body = document.querySelector("#sessions tbody");
  body.replaceChildren();
  for (const r of rows) {
    const tr = el("tr", { "data-session": r.session_id });
    const cost = "$" + r.cost_usd.toFixed(2) + (r.unpriced_models.length ? " +?" : "");
    const cells = [r.session_id, r.agent || "", r.model || "", r.events, r.tokens, cost,
      r.tool_calls, r.failures, Math.round(r.active_ms / 60000) + " min", fmtTime(r.last_ts)];
    for (const c of cells) tr.appendChild(el("td", {}, String(c)));
    tr.addEventListener("click", () => onPick(r.session_id, tr));
    body.appendChild(tr);
  }
}

function renderCost(byDay) {
  const days = Object.keys(byDay);
  const models = [...new Set(days.flatMap((d) => Object.keys(byDay[d])))].sort();
  const max = Math.max(0.000001, ...days.map((d) => Object.values(byDay[d]).reduce((a, b) => a + b, 0)));
  const w = 600, h = 240, pad = 30, bw = Math.max(4, (w - pad) / Math.max(days.length, 1) - 4);
  const chart = svg(w, h + 40);
  days.forEach((day, i) => {
    let y = h;
    models.forEach((m, j) => {
      const usd = byDay[day][m] || 0;
      const bh = (usd / max) * (h - 10);
      if (usd > 0) {
        const rect = el("svg:rect", { x: pad + i * (bw + 4), y: y - bh, width: bw, height: bh,
          fill: PALETTE[j % PALETTE.length], class: "cost-bar" });
        rect.appendChild(el("svg:title", {}, `${day} ${m}: $${usd.toFixed(4)}`));
        chart.appendChild(rect);
      }
      y -= bh;
    });
    chart.appendChild(el("svg:text", { x: pad + i * (bw + 4), y: h + 12, class: "bar-label" }, day.slice(5)));
  });
  models.forEach((m, j) => {
    chart.appendChild(el("svg:rect", { x: pad + j * 150, y: h + 22, width: 10, height: 10, fill: PALETTE[j % PALETTE.length] }));
    chart.appendChild(el("svg:text", { x: pad + j * 150 + 14, y: h + 31, class: "bar-label" }, m));
  });
  chart.appendChild(el("svg:text", { x: 0, y: 10, class: "bar-label" }, "$" + max.toFixed(2)));
  document.getElementById("cost-chart").replaceChildren(chart);
}

function renderTools(rates) {
  const tools = Object.keys(rates);
  const w = 600, row = 18, h = Math.max(row, tools.length * row) + 10;
  const chart = svg(w, h);
  tools.forEach((t, i) => {
    const r = rates[t];
    chart.appendChild(el("svg:text", { x: 0, y: i * row + 13, class: "bar-label" }, t));
    chart.appendChild(el("svg:rect", { x: 140, y: i * row + 3, width: 400, height: row - 6, fill: "#eee" }));
    const bar = el("svg:rect", { x: 140, y: i * row + 3, width: Math.max(1, 400 * r.rate),
      height: row - 6, class: r.failures ? "error tool-bar" : "ok tool-bar" });
    bar.appendChild(el("svg:title", {}, `${t}: ${r.failures} of ${r.calls} failed`));
    chart.appendChild(bar);
    chart.appendChild(el("svg:text", { x: 548, y: i * row + 13, class: "bar-label" },
      `${Math.round(r.rate * 100)}% of ${r.calls}`));
  });
  document.getElementById("tool-chart").replaceChildren(chart);
}

function renderTimeline(items) {
  const w = 900, row = 16;
  const t0 = items.length ? items[0].ts_ms : 0;
  const span = Math.max(1, ...items.map((i) => i.ts_ms + (i.duration_ms || 0) - t0));
  const chart = svg(w, items.length * row + 10);
  items.forEach((it, i) => {
    const x = 160 + ((it.ts_ms - t0) / span) * (w - 180);
    const width = Math.max(3, ((it.duration_ms || 0) / span) * (w - 180));
    const label = `${it.seq} ${it.kind}${it.tool ? " " + it.tool : ""}`;
    chart.appendChild(el("svg:text", { x: 0, y: i * row + 12, class: "bar-label" }, label));
    const mark = el("svg:rect", { x, y: i * row + 3, width, height: row - 6,
      class: (it.error ? "error" : it.kind === "tool_call" ? "ok" : "event") + " timeline-item" });
    const d = it.duration_ms !== undefined ? `, ${it.duration_ms} ms` : "";
    mark.appendChild(el("svg:title", {}, label + d + (it.error ? ", failed" : "")));
    chart.appendChild(mark);
  });
  document.getElementById("timeline").replaceChildren(chart);
}

async function pick(sessionId, tr) {
  document.querySelectorAll("#sessions tr.selected").forEach((r) => r.classList.remove("selected"));
  if (tr) tr.classList.add("selected");
  document.getElementById("timeline-session").textContent = sessionId;
  try {
    const body = await getJSON("/team/timeline/" + encodeURIComponent(sessionId));
    renderTimeline(body.items);
  } catch (err) {
    document.getElementById("timeline").textContent = "not on this worker: " + err.message;
  }
}

async function main() {
  const status = document.getElementById("status");
  const [sessions, charts] = await Promise.all([
    getJSON("/team/sessions?limit=200"),
    getJSON("/team/charts"),
  ]);
  renderSessions(sessions.sessions, pick);
  renderCost(charts.cost_by_day_model);
  renderTools(charts.tool_failures);
  status.textContent = `${sessions.count} sessions`;
  document.body.dataset.loaded = "yes";
  if (sessions.sessions.length) {
    const first = document.querySelector("#sessions tbody tr");
    await pick(sessions.sessions[0].session_id, first);
  }
  document.body.dataset.timeline = "yes";
}

main().catch((err) => {
  document.getElementById("status").textContent = "error: " + err.message;
  console.error(err);
});
