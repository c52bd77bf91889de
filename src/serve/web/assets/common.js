// Shared helpers of the wenhui web pages (no framework).
"use strict";

window.wenhui = {
  /** The message of an error response body ({"error": {"message"}}) or the status text. */
  async errorOf(resp) {
    try {
      const body = await resp.json();
      if (body && body.error && body.error.message) return body.error.message;
    } catch (_) { /* not JSON */ }
    return resp.status + " " + resp.statusText;
  },

  /** POSTs JSON and returns the parsed answer; throws Error(message) on a non-2xx status. */
  async postJSON(url, body) {
    const resp = await fetch(url, { method: "POST", headers: { "Content-Type": "application/json" }, body: JSON.stringify(body) });
    if (!resp.ok) throw new Error(await wenhui.errorOf(resp));
    return resp.json();
  },

  /** POSTs JSON to an SSE endpoint and calls onData(parsed JSON) for each event until [DONE]. */
  async postSSE(url, body, onData) {
    const resp = await fetch(url, { method: "POST", headers: { "Content-Type": "application/json" }, body: JSON.stringify(body) });
    if (!resp.ok) throw new Error(await wenhui.errorOf(resp));
    const reader = resp.body.getReader();
    const decoder = new TextDecoder();
    let buffer = "";
    for (;;) {
      const { value, done } = await reader.read();
      if (done) break;
      buffer += decoder.decode(value, { stream: true });
      let cut;
      while ((cut = buffer.indexOf("\n\n")) >= 0) {
        const event = buffer.slice(0, cut);
        buffer = buffer.slice(cut + 2);
        const data = event.split("\n").filter((l) => l.startsWith("data:")).map((l) => l.slice(5).trimStart()).join("\n");
        if (data === "[DONE]") return;
        if (data) onData(JSON.parse(data));
      }
    }
  },

  /** Creates an element with text. */
  el(tag, text, className) {
    const e = document.createElement(tag);
    if (text !== undefined && text !== null) e.textContent = String(text);
    if (className) e.className = className;
    return e;
  },

  /** A number with `digits` decimals. */
  fmt(x, digits) {
    return typeof x === "number" ? x.toFixed(digits === undefined ? 2 : digits) : "–";
  },

  /** A rate as a percentage; "–" for no rate (null: no votes yet). */
  pct(x) {
    return typeof x === "number" ? (100 * x).toFixed(1) + "%" : "–";
  },
};
