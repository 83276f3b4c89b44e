// The admin token (kept for this tab only), authenticated requests, and the live feed.

const KEY = "wsguard-admin-token";

export class Unauthorized extends Error {}

export const session = {
  get token() {
    return sessionStorage.getItem(KEY);
  },
  set token(value) {
    if (value) sessionStorage.setItem(KEY, value);
    else sessionStorage.removeItem(KEY);
  },
};

async function problem(response) {
  try {
    const body = await response.json();
    return body.detail || body.error || body.message || response.statusText;
  } catch {
    return response.statusText || `HTTP ${response.status}`;
  }
}

/** A JSON request with the admin token; 401 and 403 raise Unauthorized with the server's reason. */
export async function request(path, { method = "GET", token = session.token, body } = {}) {
  const headers = { Authorization: `Bearer ${token}` };
  if (body !== undefined) headers["Content-Type"] = "application/json";
  const response = await fetch(path, {
    method,
    headers,
    body: body === undefined ? undefined : JSON.stringify(body),
    cache: "no-store",
  });
  if (response.status === 401 || response.status === 403) {
    throw new Unauthorized(await problem(response));
  }
  if (!response.ok) {
    const error = new Error(await problem(response));
    error.status = response.status;
    throw error;
  }
  return response.json();
}

/** Download an admin-only file: fetched with the token, saved through a temporary blob URL. */
export async function download(path, filename) {
  const response = await fetch(path, { headers: { Authorization: `Bearer ${session.token}` }, cache: "no-store" });
  if (response.status === 401 || response.status === 403) throw new Unauthorized(await problem(response));
  if (!response.ok) throw new Error(await problem(response));
  const url = URL.createObjectURL(await response.blob());
  const link = document.createElement("a");
  link.href = url;
  link.download = filename;
  document.body.append(link);
  link.click();
  link.remove();
  setTimeout(() => URL.revokeObjectURL(url), 1000);
}

/** A dev admin token from POST /api/dev/tokens (only a --dev server answers). */
export async function devAdminToken() {
  const response = await fetch("/api/dev/tokens", {
    method: "POST",
    headers: { "Content-Type": "application/json" },
    body: JSON.stringify({ user_id: "dashboard-admin", admin: true }),
  });
  if (!response.ok) throw new Error(await problem(response));
  return (await response.json()).token;
}

/**
 * Read the server-sent events of GET /api/admin/feed (over fetch, so that the token travels in a
 * header, never in a URL). Calls onHistory once per connection, onFrame every second; reconnects
 * after a second on a network error; stops on 401/403 (onDenied) or when the signal aborts.
 */
export async function follow(signal, { onHistory, onFrame, onDenied, onState }) {
  while (!signal.aborted) {
    try {
      const response = await fetch("/api/admin/feed", {
        headers: { Authorization: `Bearer ${session.token}`, Accept: "text/event-stream" },
        cache: "no-store",
        signal,
      });
      if (response.status === 401 || response.status === 403) {
        onDenied(await problem(response));
        return;
      }
      if (!response.ok || !response.body) throw new Error(`feed answered ${response.status}`);
      onState("live");
      const reader = response.body.pipeThrough(new TextDecoderStream()).getReader();
      let buffer = "";
      for (;;) {
        const { value, done } = await reader.read();
        if (done) break;
        buffer += value;
        let end;
        while ((end = buffer.indexOf("\n\n")) >= 0) {
          const block = buffer.slice(0, end);
          buffer = buffer.slice(end + 2);
          let event = "message";
          const data = [];
          for (const line of block.split("\n")) {
            if (line.startsWith("event: ")) event = line.slice(7);
            else if (line.startsWith("data: ")) data.push(line.slice(6));
          }
          const parsed = JSON.parse(data.join("\n"));
          if (event === "history") onHistory(parsed);
          else onFrame(parsed);
        }
      }
    } catch (error) {
      if (signal.aborted) return;
    }
    onState("down");
    await new Promise((resolve) => setTimeout(resolve, 1000));
  }
}
