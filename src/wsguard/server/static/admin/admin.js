// The operator's page: sign-in, the live overview, and one user's connections.
// Every value from the server is written with textContent, never as HTML.

import { Unauthorized, devAdminToken, download, follow, request, session } from "./api.js";
import { drawLineChart } from "./charts.js";

const $ = (id) => document.getElementById(id);
const samples = [];
const HISTORY_SECONDS = 900;
let feed = null;
let lastFrame = null;

// Formatting

const count = (value) => Math.round(value).toLocaleString("en");
function bytes(value) {
  const units = ["B", "KB", "MB", "GB"];
  let index = 0;
  while (value >= 1024 && index < units.length - 1) {
    value /= 1024;
    index += 1;
  }
  return `${value.toFixed(index ? 1 : 0)} ${units[index]}`;
}
const when = (seconds) => new Date(seconds * 1000).toLocaleString("en-GB");
const shortId = (id) => (id.length > 14 ? `${id.slice(0, 9)}…${id.slice(-4)}` : id);

function cell(text, className) {
  const td = document.createElement("td");
  td.textContent = text;
  if (className) td.className = className;
  return td;
}
function row(...cells) {
  const tr = document.createElement("tr");
  tr.append(...cells);
  return tr;
}
function emptyRow(columns, text) {
  const td = cell(text, "empty");
  td.colSpan = columns;
  return row(td);
}

// Views

function show(view) {
  const signedIn = view !== "sign-in";
  $("sign-in").hidden = view !== "sign-in";
  $("overview").hidden = view !== "overview";
  $("user-view").hidden = view !== "user";
  $("nav").hidden = !signedIn;
}

function signOut(reason = "") {
  session.token = null;
  clearInterval(leakcheckTimer);
  if (feed) feed.abort();
  feed = null;
  lastFrame = null;
  samples.length = 0;
  $("sign-in-error").textContent = reason;
  $("feed-status").textContent = "";
  $("feed-status").className = "status";
  show("sign-in");
}

async function signIn(token) {
  try {
    await request("/api/admin/instances", { token });
  } catch (error) {
    signOut(error instanceof Unauthorized ? `Refused: ${error.message}` : `Cannot reach the server: ${error.message}`);
    return;
  }
  session.token = token;
  $("token-input").value = "";
  $("sign-in-error").textContent = "";
  startFeed();
  loadLeakcheck();
  clearInterval(leakcheckTimer);
  leakcheckTimer = setInterval(loadLeakcheck, 30000);
  route();
}

function startFeed() {
  if (feed) feed.abort();
  feed = new AbortController();
  follow(feed.signal, {
    onHistory(past) {
      samples.length = 0;
      samples.push(...past);
    },
    onFrame(frame) {
      lastFrame = frame;
      const sample = frame.sample;
      if (!samples.length || samples[samples.length - 1].t !== sample.t) samples.push(sample);
      while (samples.length && samples[0].t < sample.t - HISTORY_SECONDS) samples.shift();
      renderOverview(frame);
    },
    onDenied(reason) {
      signOut(`Refused: ${reason}`);
    },
    onState(state) {
      $("feed-status").textContent = state === "live" ? "live" : "reconnecting";
      $("feed-status").className = `status ${state}`;
    },
  });
}

// The overview

function sampleAgo(seconds) {
  const target = samples[samples.length - 1].t - seconds;
  let found = samples[0];
  for (const sample of samples) {
    if (sample.t <= target) found = sample;
    else break;
  }
  return found;
}

function closesLastMinute() {
  if (samples.length < 2) return {};
  const now = samples[samples.length - 1];
  const before = sampleAgo(60);
  const result = {};
  for (const [reason, total] of Object.entries(now.closes)) {
    const delta = total - (before.closes[reason] || 0);
    if (delta > 0) result[reason] = delta;
  }
  return result;
}

const totalCloses = (sample) => Object.values(sample.closes).reduce((a, b) => a + b, 0);

/** Closes in the minute before each sample (fewer seconds while the server is younger). */
function closesPerMinuteSeries() {
  const points = [];
  let start = 0;
  for (let i = 0; i < samples.length; i += 1) {
    while (samples[start].t < samples[i].t - 60) start += 1;
    points.push([samples[i].t, totalCloses(samples[i]) - totalCloses(samples[start])]);
  }
  return points;
}

/** The seconds the charts show: the last 15 minutes, or since the server started (at least 1). */
function chartSpan() {
  if (!samples.length) return 60;
  const known = samples[samples.length - 1].t - samples[0].t;
  return Math.min(HISTORY_SECONDS, Math.max(60, Math.ceil(known)));
}

function renderOverview(frame) {
  const sample = frame.sample;
  $("fig-connections").textContent = count(sample.connections);
  $("fig-connections-cluster").textContent =
    frame.instances.length > 1 ? `${count(frame.cluster.connections)} in the cluster` : "this instance";
  $("fig-users").textContent = count(frame.cluster.users);
  $("fig-instances").textContent = count(frame.instances.length);
  $("fig-backend").textContent = sample.backend_up ? "up" : "down";
  $("fig-backend").className = `big ${sample.backend_up ? "up" : "down"}`;
  $("fig-registry").textContent = `${count(sample.registry_entries)} / ${count(sample.connections)}`;
  $("fig-registry-ratio").textContent = sample.connections
    ? `${(sample.registry_entries / sample.connections).toFixed(1)} per connection; a leak parts the lines`
    : "no connections: should be 0";
  $("fig-evictions").textContent = count(sample.evictions);
  $("fig-slow").textContent = count(sample.slow_consumer_closes);
  $("fig-reaps").textContent = count(sample.heartbeat_reaps);
  $("fig-p99").textContent = sample.cleanup_p99_ms === null ? "no closes" : `≤ ${sample.cleanup_p99_ms} ms`;
  $("fig-tasks").textContent = count(sample.tasks);
  $("fig-fds").textContent = count(sample.fds);
  $("fig-rss").textContent = bytes(sample.rss_bytes);

  const users = frame.top_users.map((user) => {
    const open = document.createElement("button");
    open.type = "button";
    open.className = "link";
    open.textContent = user.user_id;
    open.dataset.user = user.user_id;
    open.addEventListener("click", () => {
      location.hash = `#/user/${encodeURIComponent(user.user_id)}`;
    });
    const name = document.createElement("td");
    name.append(open);
    const spread = Object.entries(user.instances).map(([id, n]) => `${shortId(id)}: ${n}`).join(", ");
    return row(name, cell(count(user.connections), "num"), cell(spread));
  });
  $("top-users").tBodies[0].replaceChildren(...(users.length ? users : [emptyRow(3, "nobody online")]));

  const reasons = Object.entries(closesLastMinute()).sort((a, b) => b[1] - a[1]);
  $("close-reasons").tBodies[0].replaceChildren(
    ...(reasons.length
      ? reasons.map(([reason, n]) => row(cell(reason), cell(count(n), "num")))
      : [emptyRow(2, "no closes")]),
  );

  $("instances").tBodies[0].replaceChildren(
    ...frame.instances.map((info) => {
      const tr = row(
        cell(info.instance_id + (info.instance_id === frame.instance_id ? " (this one)" : "")),
        cell(info.host),
        cell(String(info.pid), "num"),
        cell(info.version),
        cell(when(info.started_at)),
        cell(count(info.connections), "num"),
        cell(count(info.users), "num"),
        cell(bytes(info.rss_bytes), "num"),
        cell(info.backend_up ? "up" : "down", info.backend_up ? "up" : "down"),
      );
      tr.dataset.instance = info.instance_id;
      return tr;
    }),
  );

  const series = (key) => samples.map((s) => [s.t, s[key]]);
  const now = sample.t;
  const span = chartSpan();
  drawLineChart(
    $("chart-connections"),
    "Connections and registry entries",
    [
      { name: "connections", points: series("connections") },
      { name: "registry entries", points: series("registry_entries") },
      { name: "users", points: series("users") },
    ],
    { format: count, now, span },
  );
  drawLineChart(
    $("chart-closes"),
    "Closes in the last minute",
    [{ name: "closes", points: closesPerMinuteSeries() }],
    { format: count, now, span },
  );
  drawLineChart($("chart-memory"), "Resident memory", [{ name: "RSS", points: series("rss_bytes") }], {
    format: bytes,
    now,
    span,
  });
  drawLineChart(
    $("chart-tasks"),
    "Tasks and file descriptors",
    [
      { name: "tasks", points: series("tasks") },
      { name: "file descriptors", points: series("fds") },
    ],
    { format: count, now, span },
  );
}

// The last leak check

let leakcheckTimer = null;

async function loadLeakcheck() {
  let report;
  try {
    report = await request("/api/admin/leakcheck");
  } catch (error) {
    if (error instanceof Unauthorized) return signOut(`Refused: ${error.message}`);
    $("leakcheck-panel").hidden = true;
    return;
  }
  $("leakcheck-panel").hidden = report === null;
  if (report === null) return;
  $("leakcheck-download").hidden = !report.html;
  const verdict = report.passed ? "no leak" : "LEAK OR FAILURE";
  $("leakcheck-summary").textContent =
    `${verdict}: profile ${report.profile}, ${report.target}, written ${when(report.modified_at)}`;
  $("leakcheck-summary").className = report.passed ? "up" : "down";
  $("leakcheck").tBodies[0].replaceChildren(
    ...report.scenarios.map((s) =>
      row(cell(s.name), cell(s.verdict, s.verdict === "pass" ? "up" : "down"), cell(s.reasons.join("; "))),
    ),
  );
}

// One user's view

let currentUser = null;

async function renderUser(userId) {
  currentUser = userId;
  $("user-id").textContent = userId;
  $("user-error").textContent = "";
  let view;
  try {
    view = await request(`/api/admin/users/${encodeURIComponent(userId)}`);
  } catch (error) {
    if (error instanceof Unauthorized) return signOut(`Refused: ${error.message}`);
    $("user-error").textContent = error.message;
    return;
  }
  if (currentUser !== userId) return;
  const instances = Object.keys(view.instances).length;
  $("user-summary").textContent = view.online
    ? `${view.connections} connection${view.connections === 1 ? "" : "s"} on ${instances} instance${instances === 1 ? "" : "s"}`
    : "not connected";
  $("close-all").disabled = !view.online;
  const rows = view.connection_list.map((c) => {
    const action = document.createElement("td");
    const close = document.createElement("button");
    close.type = "button";
    close.className = "danger";
    close.textContent = "Close";
    close.dataset.connection = c.connection_id;
    close.addEventListener("click", () => closeOne(c.connection_id, c.instance_id));
    action.append(close);
    const id = cell("");
    const code = document.createElement("code");
    code.textContent = c.connection_id;
    id.append(code);
    const tr = row(
      id,
      cell(when(c.opened_at)),
      cell(c.client_address ?? "–"),
      cell(c.user_agent ?? "–"),
      cell(c.transport ?? "–"),
      cell(c.subscriptions ? c.subscriptions.join(", ") || "none" : "–"),
      cell(c.unsent_bytes === undefined ? "–" : count(c.unsent_bytes), "num"),
      cell(c.here ? shortId(c.instance_id) : `${shortId(c.instance_id)} (another instance)`),
      action,
    );
    tr.dataset.connection = c.connection_id;
    tr.dataset.instance = c.instance_id;
    return tr;
  });
  $("connections").tBodies[0].replaceChildren(...(rows.length ? rows : [emptyRow(9, "no open connections")]));
}

function confirmThen(text, label, action) {
  const dialog = $("confirm");
  $("confirm-text").textContent = text;
  $("confirm-ok").textContent = label;
  const ok = $("confirm-ok");
  const cancel = $("confirm-cancel");
  const done = () => {
    ok.removeEventListener("click", onOk);
    cancel.removeEventListener("click", onCancel);
    dialog.close();
  };
  const onOk = async () => {
    done();
    await action();
  };
  const onCancel = () => done();
  ok.addEventListener("click", onOk);
  cancel.addEventListener("click", onCancel);
  dialog.showModal();
}

async function act(path, method) {
  try {
    await request(path, { method });
  } catch (error) {
    if (error instanceof Unauthorized) return signOut(`Refused: ${error.message}`);
    $("user-error").textContent = error.message;
  }
  setTimeout(() => currentUser && renderUser(currentUser), 300);
}

function closeOne(connectionId, instanceId) {
  const query = new URLSearchParams({ instance_id: instanceId });
  confirmThen(
    `Close connection ${connectionId}? The client receives 4003 (disconnected by server).`,
    "Close connection",
    () => act(`/api/admin/connections/${encodeURIComponent(connectionId)}?${query}`, "DELETE"),
  );
}

function closeAll() {
  const userId = currentUser;
  confirmThen(
    `Close every connection of ${userId}, on every instance? Each client receives 4003.`,
    "Close all",
    () => act(`/api/admin/users/${encodeURIComponent(userId)}`, "DELETE"),
  );
}

// Routing

function route() {
  if (!session.token) return show("sign-in");
  const match = location.hash.match(/^#\/user\/(.+)$/);
  if (match) {
    show("user");
    renderUser(decodeURIComponent(match[1]));
  } else {
    currentUser = null;
    show("overview");
    if (lastFrame) renderOverview(lastFrame);
  }
}

async function init() {
  $("sign-in-form").addEventListener("submit", (event) => {
    event.preventDefault();
    signIn($("token-input").value.trim());
  });
  $("dev-token").addEventListener("click", async () => {
    try {
      await signIn(await devAdminToken());
    } catch (error) {
      $("sign-in-error").textContent = `No dev token: ${error.message}`;
    }
  });
  $("sign-out").addEventListener("click", () => signOut());
  $("leakcheck-download").addEventListener("click", async () => {
    try {
      await download("/api/admin/leakcheck.html", "leakcheck.html");
    } catch (error) {
      if (error instanceof Unauthorized) signOut(`Refused: ${error.message}`);
    }
  });
  $("close-all").addEventListener("click", closeAll);
  $("find-user").addEventListener("submit", (event) => {
    event.preventDefault();
    location.hash = `#/user/${encodeURIComponent($("find-user-input").value.trim())}`;
  });
  window.addEventListener("hashchange", route);
  try {
    const about = await (await fetch("/api/admin/about", { cache: "no-store" })).json();
    $("dev-token").hidden = !about.dev;
  } catch {
    $("dev-token").hidden = true;
  }
  if (session.token) await signIn(session.token);
  else show("sign-in");
}

init();
