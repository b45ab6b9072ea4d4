// Steward web chat: a visitor's own conversation with the assistant. The
// session token stays in this browser; replies are read live as written.
"use strict";

const page = document.querySelector("main.visitor");
const channel = page.dataset.channel;
const base = `/chat/${channel}`;
const list = page.querySelector(".messages");
const form = page.querySelector("form.compose");
const input = form.querySelector("textarea");
const status = page.querySelector(".status");
const storageKey = `steward-chat-${channel}`;
const shown = new Set();
let writing = null;
let following = false;
let lastId = null;

function bubble(role, text) {
  const item = document.createElement("li");
  item.className = role;
  const body = document.createElement("div");
  body.className = "text";
  body.textContent = text;
  item.appendChild(body);
  list.appendChild(item);
  list.scrollTop = list.scrollHeight;
  return item;
}

function show(message) {
  if (shown.has(message.id)) return;
  shown.add(message.id);
  lastId = message.id;
  let item;
  if (message.role === "assistant" && writing) {
    item = writing;
    writing = null;
    item.querySelector(".text").textContent = message.text;
  } else if (message.role === "user" && list.querySelector(`[data-client-text="pending"]`)) {
    item = list.querySelector(`[data-client-text="pending"]`);
    item.removeAttribute("data-client-text");
  } else {
    item = bubble(message.role, message.text);
  }
  item.dataset.messageId = message.id;
  if (Array.isArray(message.sources) && message.sources.length) {
    const note = document.createElement("p");
    note.className = "sources";
    note.textContent = "Sources: " + message.sources.map((s) => s.label).join("; ");
    item.appendChild(note);
  }
  if (message.role === "assistant") item.appendChild(ratingButtons(message.id));
}

// 👍 and 👎 under a reply: the visitor's rating of it, which a second click
// on the other replaces.
function ratingButtons(messageId) {
  const buttons = document.createElement("div");
  buttons.className = "rating";
  for (const [rating, label, symbol] of [["up", "Helpful", "\u{1F44D}"], ["down", "Not helpful", "\u{1F44E}"]]) {
    const button = document.createElement("button");
    button.type = "button";
    button.dataset.rating = rating;
    button.title = label;
    button.setAttribute("aria-label", label);
    button.setAttribute("aria-pressed", "false");
    button.textContent = symbol;
    button.addEventListener("click", async () => {
      const response = await call(`/messages/${messageId}/feedback`, {
        method: "POST",
        headers: { "Content-Type": "application/json" },
        body: JSON.stringify({ rating }),
      });
      if (!response.ok) {
        status.textContent = "Not rated: " + (await failure(response));
        return;
      }
      for (const other of buttons.querySelectorAll("button")) {
        other.setAttribute("aria-pressed", String(other === button));
      }
    });
    buttons.appendChild(button);
  }
  return buttons;
}

async function session() {
  let token = localStorage.getItem(storageKey);
  if (token) return token;
  const response = await fetch(`${base}/session`, { method: "POST" });
  if (!response.ok) throw new Error(await failure(response));
  token = (await response.json()).token;
  localStorage.setItem(storageKey, token);
  return token;
}

async function failure(response) {
  try {
    return (await response.json()).error.message;
  } catch (_) {
    return response.statusText || "the request failed";
  }
}

async function call(path, options = {}) {
  const token = await session();
  const headers = Object.assign({ Authorization: `Bearer ${token}` }, options.headers || {});
  const response = await fetch(base + path, Object.assign({}, options, { headers }));
  if (response.status === 401) {
    // The session ended (expired, or another Steward's): start a new one.
    localStorage.removeItem(storageKey);
  }
  return response;
}

// Server-sent events read through fetch, so that the token travels in a
// header and never in a URL.
async function follow() {
  if (following) return;
  following = true;
  while (following) {
    try {
      const query = lastId ? `?after=${lastId}` : "";
      const response = await call(`/events${query}`, { headers: { Accept: "text/event-stream" } });
      if (response.status === 404) { following = false; return; }
      if (!response.ok) throw new Error(await failure(response));
      const reader = response.body.pipeThrough(new TextDecoderStream()).getReader();
      let buffer = "";
      for (;;) {
        const { value, done } = await reader.read();
        if (done) break;
        buffer += value;
        let end;
        while ((end = buffer.indexOf("\n\n")) >= 0) {
          handle(buffer.slice(0, end));
          buffer = buffer.slice(end + 2);
        }
      }
    } catch (_) {
      // Reconnected below, from the last message seen.
    }
    await new Promise((resolve) => setTimeout(resolve, 1000));
  }
}

function handle(block) {
  let event = "message";
  let data = "";
  for (const line of block.split("\n")) {
    if (line.startsWith("event:")) event = line.slice(6).trim();
    else if (line.startsWith("data:")) data += line.slice(5).trim();
  }
  if (!data) return;
  const payload = JSON.parse(data);
  if (event === "reply_started") {
    writing = bubble("assistant", "");
  } else if (event === "delta") {
    if (!writing) writing = bubble("assistant", "");
    writing.querySelector(".text").textContent += payload.text;
    list.scrollTop = list.scrollHeight;
  } else if (event === "message") {
    show(payload);
  }
}

async function load() {
  const token = localStorage.getItem(storageKey);
  if (!token) return;
  const response = await call("/messages");
  if (!response.ok) return;
  const { messages } = await response.json();
  messages.forEach(show);
  if (messages.length) follow();
}

form.addEventListener("submit", async (event) => {
  event.preventDefault();
  const text = input.value.trim();
  if (!text) return;
  input.value = "";
  status.textContent = "";
  const mine = bubble("user", text);
  mine.dataset.clientText = "pending";
  // The same id on every try: a message whose answer was lost is stored once.
  const body = JSON.stringify({ text, client_id: crypto.randomUUID() });
  try {
    const response = await sendWithRetries(body);
    if (!response.ok) throw new Error(await failure(response));
    const sent = await response.json();
    if (sent.message_id) {
      shown.add(sent.message_id);
      mine.removeAttribute("data-client-text");
      mine.dataset.messageId = sent.message_id;
      if (!lastId) lastId = sent.message_id;
    }
    follow();
  } catch (error) {
    mine.classList.add("error");
    status.textContent = "Not sent: " + error.message;
  }
});

async function sendWithRetries(body) {
  for (let attempt = 0; ; attempt++) {
    try {
      return await call("/messages", { method: "POST", headers: { "Content-Type": "application/json" }, body });
    } catch (error) {
      if (attempt >= 3) throw error;
      await new Promise((resolve) => setTimeout(resolve, 1000 * (attempt + 1)));
    }
  }
}

// Enter sends; Shift+Enter starts a new line.
input.addEventListener("keydown", (event) => {
  if (event.key === "Enter" && !event.shiftKey) {
    event.preventDefault();
    form.requestSubmit();
  }
});

load();
