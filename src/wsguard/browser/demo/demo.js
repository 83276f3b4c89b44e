// The --dev demo page: sign in with a dev token, follow a thread, start runs, in as many tabs
// as you like; they share one connection. No inline script, so it runs under a strict CSP.
import { connect } from "/client/wsguard.js";

const $ = (/** @type {string} */ id) => /** @type {HTMLElement} */ (document.getElementById(id));
const input = (/** @type {string} */ id) => /** @type {HTMLInputElement} */ (document.getElementById(id));

async function devToken(/** @type {string} */ user) {
  const response = await fetch("/api/dev/tokens", {
    method: "POST",
    headers: { "Content-Type": "application/json" },
    body: JSON.stringify({ user_id: user, ttl: 600 }),
  });
  if (!response.ok) throw new Error(`dev token refused: HTTP ${response.status}`);
  return (await response.json()).token;
}

function show(/** @type {any} */ event) {
  const row = document.createElement("tr");
  for (const text of [event.offset, event.event, event.run_id ?? "", JSON.stringify(event.data)]) {
    const cell = document.createElement("td");
    cell.textContent = String(text);
    row.append(cell);
  }
  $("events").append(row);
}

function signIn(/** @type {string} */ user, /** @type {string} */ thread) {
  localStorage.setItem("wsguard-demo", JSON.stringify({ user, thread }));
  $("signin").hidden = true;
  $("session").hidden = false;
  $("who").textContent = `${user}, thread ${thread}`;
  const client = connect("/ws", { token: () => devToken(user), shareKey: user });
  const state = () => {
    $("state").textContent = client.state;
    $("state").className = client.state;
  };
  const role = () => ($("role").textContent = client.role === "leader" ? "leader (holds the socket)" : client.role);
  client.addEventListener("state", state);
  client.addEventListener("role", role);
  client.addEventListener("recoveryfailed", () => ($("notice").textContent = "Some events could not be recovered; reload to see them."));
  client.addEventListener("stopped", (event) => {
    const detail = /** @type {CustomEvent} */ (event).detail;
    $("notice").textContent = `Stopped: ${detail.why}. ${detail.action}`;
  });
  state();
  role();
  client.subscribe(thread, show);
  $("run").addEventListener("submit", async (event) => {
    event.preventDefault();
    const response = await fetch(`/api/threads/${encodeURIComponent(thread)}/runs`, {
      method: "POST",
      headers: { Authorization: `Bearer ${await devToken(user)}`, "Content-Type": "application/json" },
      body: JSON.stringify({ text: input("text").value }),
    });
    $("notice").textContent = response.ok ? "" : `Could not start a run: HTTP ${response.status}`;
  });
}

$("signin").addEventListener("submit", (event) => {
  event.preventDefault();
  signIn(input("user").value, input("thread").value);
});

const saved = JSON.parse(localStorage.getItem("wsguard-demo") ?? "null");
const fromUrl = new URLSearchParams(location.search).get("user");
if (fromUrl) signIn(fromUrl, new URLSearchParams(location.search).get("thread") ?? "chat-1");
else if (saved) signIn(saved.user, saved.thread);
