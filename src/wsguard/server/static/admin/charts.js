// Line charts as inline SVG: a time axis, a y axis from 0, one polyline per series.
// Colours come from CSS classes (no inline style), so the page runs under a strict CSP.

const SVG = "http://www.w3.org/2000/svg";
const WIDTH = 480;
const HEIGHT = 160;
const LEFT = 46;
const RIGHT = 8;
const TOP = 8;
const BOTTOM = 20;

function svgElement(name, attributes = {}) {
  const element = document.createElementNS(SVG, name);
  for (const [key, value] of Object.entries(attributes)) {
    element.setAttribute(key, String(value));
  }
  return element;
}

function niceCeiling(value) {
  if (value <= 0) return 1;
  const magnitude = 10 ** Math.floor(Math.log10(value));
  for (const step of [1, 2, 4, 5, 10]) {
    if (step * magnitude >= value) return step * magnitude;
  }
  return 10 * magnitude;
}

function clock(seconds, span) {
  const date = new Date(seconds * 1000);
  const two = (n) => String(n).padStart(2, "0");
  const minutes = `${two(date.getHours())}:${two(date.getMinutes())}`;
  return span < 300 ? `${minutes}:${two(date.getSeconds())}` : minutes;
}

/**
 * Draw `series` ([{name, points: [[t, value], ...]}]) into `figure`, replacing what was there.
 * `format` turns a y value into its label; `span` is the seconds shown, ending `now`.
 */
export function drawLineChart(figure, title, series, { format = String, span = 900, now = Date.now() / 1000 } = {}) {
  const start = now - span;
  const values = series.flatMap((s) => s.points.filter(([t]) => t >= start).map(([, v]) => v));
  const top = niceCeiling(Math.max(2, ...values));
  const x = (t) => LEFT + ((t - start) / span) * (WIDTH - LEFT - RIGHT);
  const y = (v) => TOP + (1 - v / top) * (HEIGHT - TOP - BOTTOM);

  const svg = svgElement("svg", { viewBox: `0 0 ${WIDTH} ${HEIGHT}`, role: "img", "aria-label": title });
  for (const fraction of [0, 0.5, 1]) {
    const value = top * fraction;
    svg.append(svgElement("line", { class: "axis", x1: LEFT, x2: WIDTH - RIGHT, y1: y(value), y2: y(value) }));
    const label = svgElement("text", { class: "tick", x: LEFT - 4, y: y(value) + 3, "text-anchor": "end" });
    label.textContent = format(value);
    svg.append(label);
  }
  const ticks = [start, start + span / 3, start + (2 * span) / 3, now];
  ticks.forEach((t, index) => {
    const anchor = index === 0 ? "start" : index === ticks.length - 1 ? "end" : "middle";
    const label = svgElement("text", { class: "tick", x: x(t), y: HEIGHT - 4, "text-anchor": anchor });
    label.textContent = clock(t, span);
    svg.append(label);
  });
  series.forEach((s, index) => {
    const shown = s.points.filter(([t]) => t >= start);
    if (shown.length === 0) return;
    const points = shown.map(([t, v]) => `${x(t).toFixed(1)},${y(v).toFixed(1)}`).join(" ");
    const line = svgElement("polyline", { class: `series series-${index}`, points });
    line.dataset.series = s.name;
    svg.append(line);
  });

  const caption = document.createElement("figcaption");
  caption.textContent = title;
  const legend = document.createElement("div");
  legend.className = "legend";
  series.forEach((s, index) => {
    const key = document.createElement("span");
    key.className = `key-${index}`;
    const last = s.points.length ? s.points[s.points.length - 1][1] : null;
    key.textContent = last === null ? s.name : `${s.name}: ${format(last)}`;
    legend.append(key);
  });
  figure.replaceChildren(caption, svg, legend);
}
