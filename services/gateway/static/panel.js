// The page's live panel: GET /page/metrics (the gateway reads CloudWatch for it) every REFRESH_MS and after each
// prediction (page.js's "predicted" event), drawn as small SVG bar charts, one bar per minute; no data, or no
// answer, is an empty state.
"use strict";

const REFRESH_MS = 10000;
const FLUSH_MS = 1500; // the stack sends its metrics once a second
const SVG = "http://www.w3.org/2000/svg";
const WIDTH = 150, HEIGHT = 48, SLOT = WIDTH / 15;

const ENDPOINT_CHARTS = [  // [title, series drawn (first: the dark bar), how the value is summed up, bar class]
  ["invocations / min", ["invocations"], "total", "main"],
  ["latency p50 / p99, ms", ["p50_ms", "p99_ms"], "latest", "main"],
  ["errors (4XX + 5XX)", ["errors"], "total", "bad"],
  ["instances", ["instances"], "now", "main"],
];
const FUNCTION_CHARTS = [
  ["invocations / min", ["invocations"], "total", "main"],
  ["duration p50 / p99, ms", ["p50_ms", "p99_ms"], "latest", "main"],
  ["errors", ["errors"], "total", "bad"],
  ["throttles", ["throttles"], "total", "bad"],
];

function number(value) {
  return value >= 100 ? Math.round(value).toString() : (+value.toFixed(2)).toString();
}

function summary(series, names, how, now) {
  const first = series[names[0]];
  if (how === "now") return now == null ? "—" : now.toString();
  if (how === "total") return first.some((v) => v != null) ? number(first.reduce((a, v) => a + (v || 0), 0)) : "—";
  const last = first.map((v, i) => (v == null ? -1 : i)).reduce((a, i) => Math.max(a, i), -1);
  return last < 0 ? "—" : names.map((n) => number(series[n][last])).join(" / ");
}

function bars(series, names, kind, minutes) {
  const svg = document.createElementNS(SVG, "svg");
  svg.setAttribute("viewBox", `0 0 ${WIDTH} ${HEIGHT}`);
  svg.setAttribute("preserveAspectRatio", "none");
  const top = Math.max(0, ...names.flatMap((n) => series[n].filter((v) => v != null)));
  // the last series is drawn first, wide and pale (p99 behind p50)
  [...names].reverse().forEach((name, drawn) => {
    series[name].forEach((value, i) => {
      if (value == null) return;
      const rect = document.createElementNS(SVG, "rect");
      const height = value > 0 ? Math.max(1, (value / top) * (HEIGHT - 2)) : 0;
      rect.setAttribute("x", i * SLOT + 1);
      rect.setAttribute("width", SLOT - 2);
      rect.setAttribute("y", HEIGHT - height);
      rect.setAttribute("height", height);
      rect.setAttribute("class", names.length > 1 && drawn === 0 ? "alt" : kind);
      rect.dataset.series = name;
      rect.dataset.minute = minutes[i];
      rect.dataset.value = value;
      const title = document.createElementNS(SVG, "title");
      title.textContent = `${minutes[i].slice(11, 16)} UTC ${name}: ${number(value)}`;
      rect.append(title);
      svg.append(rect);
    });
  });
  return svg;
}

function chart(id, [title, names, how, kind], series, minutes, now) {
  const box = document.createElement("div");
  box.className = "metric";
  box.dataset.metric = id + "." + names[0];
  box.innerHTML = '<div class="head"><span class="name"></span> <span class="value"></span></div>';
  box.querySelector(".name").textContent = title;
  box.querySelector(".value").textContent = summary(series, names, how, now);
  box.append(bars(series, names, kind, minutes));
  return box;
}

function group(title, why, id, charts, series, minutes, now) {
  const box = document.createElement("div");
  box.className = "group";
  box.innerHTML = "<h3></h3>";
  box.querySelector("h3").textContent = title;
  if (why) {
    const reason = document.createElement("p");
    reason.className = "why";
    reason.textContent = why;
    box.append(reason);
  } else {
    const grid = document.createElement("div");
    grid.className = "charts";
    for (const spec of charts) grid.append(chart(id, spec, series, minutes, now));
    box.append(grid);
  }
  return box;
}

function groups(data) {
  const found = [];
  const endpoint = data.endpoint || {};
  if (endpoint.reason || !(endpoint.variants || []).length) {
    found.push(group("Endpoint " + (endpoint.name || ""), endpoint.reason || "no variants", "endpoint"));
  }
  for (const variant of endpoint.variants || []) {
    const now = variant.current_instances;
    found.push(group(`Endpoint ${endpoint.name}, variant ${variant.name} (${endpoint.status})`, null,
      "endpoint." + variant.name, ENDPOINT_CHARTS, variant.series, data.minutes, now));
  }
  const fn = data.function || {};
  found.push(group("Function " + (fn.name || ""), fn.reason, "function", FUNCTION_CHARTS, fn.series, data.minutes));
  return found;
}

function hasData(data) {
  const all = [...(data.endpoint?.variants || []).map((v) => v.series), data.function?.series].filter(Boolean);
  return all.some((series) => Object.values(series).some((values) => values.some((v) => v != null)));
}

async function refreshPanel() {
  const empty = document.getElementById("panel-empty");
  const box = document.getElementById("panel-groups");
  try {
    const headers = {};
    const key = document.getElementById("key").value;
    if (key) headers["x-api-key"] = key;
    const response = await fetch("/page/metrics", { headers, cache: "no-store" });
    if (response.status === 403) throw new Error("the gateway asks for its API key (above)");
    if (!response.ok) throw new Error("metrics not available (" + response.status + ")");
    const data = await response.json();
    box.replaceChildren(...groups(data));
    empty.textContent = hasData(data) ? "" : "No metrics in the last 15 minutes: send a photo.";
  } catch (error) {
    box.replaceChildren();
    empty.textContent = "No metrics to show: " + error.message;
  }
  empty.hidden = !empty.textContent;
  document.getElementById("panel").dataset.refreshed = new Date().toISOString();
}

function schedule() {
  setTimeout(async () => {
    if (!document.hidden) await refreshPanel();
    schedule();
  }, REFRESH_MS);
}

document.addEventListener("predicted", () => setTimeout(refreshPanel, FLUSH_MS));
refreshPanel();
schedule();
