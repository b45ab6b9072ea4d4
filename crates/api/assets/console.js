// Steward console: the few things a server-rendered page cannot do alone.
// Requests go to /console/api/..., the API as the signed-in person, with the
// page's CSRF token.
"use strict";

const csrf = document.querySelector('meta[name="csrf-token"]')?.content || "";

function api(path, options = {}) {
  const headers = Object.assign({ "X-CSRF-Token": csrf }, options.headers || {});
  return fetch("/console/api" + path, Object.assign({}, options, { headers, credentials: "same-origin" }));
}

async function failureOf(response) {
  try {
    const body = await response.json();
    return body.error && body.error.message ? body.error.message : response.statusText;
  } catch (_) {
    return response.statusText || "the request failed";
  }
}

// Forms that destroy something ask first.
document.addEventListener("submit", (event) => {
  const message = event.target.dataset && event.target.dataset.confirm;
  if (message && !window.confirm(message)) event.preventDefault();
});

// Copy buttons for secrets shown once.
document.addEventListener("click", (event) => {
  const id = event.target.dataset && event.target.dataset.copy;
  if (!id) return;
  const text = document.getElementById(id)?.textContent || "";
  navigator.clipboard?.writeText(text).then(() => { event.target.textContent = "Copied"; });
});

// A part of the page that is still changing (documents being ingested, a
// crawl under way) is fetched again until it settles.
function refreshWhileWorking() {
  const part = document.querySelector("[data-refresh]");
  if (!part || !part.id) return;
  setTimeout(async () => {
    try {
      const response = await fetch(location.href, { credentials: "same-origin" });
      if (response.ok) {
        const page = new DOMParser().parseFromString(await response.text(), "text/html");
        const fresh = page.getElementById(part.id);
        if (fresh) part.replaceWith(document.importNode(fresh, true));
      }
    } catch (_) {
      // Tried again below.
    }
    refreshWhileWorking();
  }, (Number(part.dataset.refresh) || 3) * 1000);
}
refreshWhileWorking();

// Uploads: several files at once, dropped or chosen.
for (const form of document.querySelectorAll("form.upload")) {
  const drop = form.querySelector(".drop");
  const input = form.querySelector('input[type="file"]');
  const status = form.querySelector(".upload-status");
  const send = async (files) => {
    if (!files.length) return;
    const body = new FormData();
    for (const file of files) body.append("file", file, file.name);
    status.textContent = `Uploading ${files.length} file${files.length === 1 ? "" : "s"}…`;
    const response = await api(`/chatbots/${form.dataset.chatbot}/knowledge/upload`, { method: "POST", body });
    if (response.ok) {
      location.reload();
    } else {
      status.textContent = "Upload refused: " + (await failureOf(response));
    }
  };
  input.addEventListener("change", () => send([...input.files]));
  form.addEventListener("submit", (event) => { event.preventDefault(); send([...input.files]); });
  drop.addEventListener("keydown", (event) => {
    if (event.key === "Enter" || event.key === " ") { event.preventDefault(); input.click(); }
  });
  for (const name of ["dragenter", "dragover"]) {
    drop.addEventListener(name, (event) => { event.preventDefault(); drop.classList.add("over"); });
  }
  drop.addEventListener("dragleave", () => drop.classList.remove("over"));
  drop.addEventListener("drop", (event) => {
    event.preventDefault();
    drop.classList.remove("over");
    send([...event.dataTransfer.files]);
  });
}

// A conversation shown live: new messages as they are stored, and each
// reply piece by piece while it is written.
function bubble(list, role, text) {
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

function showSources(item, sources) {
  if (!Array.isArray(sources) || !sources.length) return;
  const note = document.createElement("p");
  note.className = "sources";
  note.textContent = "Sources: " + sources.map((s) => s.heading ? `${s.label} (${s.heading})` : s.label).join("; ");
  item.appendChild(note);
}

function follow(list, conversation, after, shown = new Set()) {
  let writing = null;
  const events = new EventSource(`/console/api/conversations/${conversation}/events?after=${after}`);
  events.addEventListener("reply_started", () => { writing = bubble(list, "assistant", ""); });
  events.addEventListener("delta", (event) => {
    if (!writing) writing = bubble(list, "assistant", "");
    writing.querySelector(".text").textContent += JSON.parse(event.data).text;
    list.scrollTop = list.scrollHeight;
  });
  events.addEventListener("message", (event) => {
    const message = JSON.parse(event.data);
    if (shown.has(message.id) || list.querySelector(`[data-message-id="${message.id}"]`)) return;
    shown.add(message.id);
    let item;
    if (message.role === "assistant" && writing) {
      item = writing;
      writing = null;
      item.querySelector(".text").textContent = message.text;
    } else {
      item = bubble(list, message.role, message.text);
    }
    item.dataset.messageId = message.id;
    showSources(item, message.sources);
  });
  return events;
}

// A conversation's page follows it from its last message.
for (const list of document.querySelectorAll("ol.thread[data-conversation]")) {
  follow(list, list.dataset.conversation, list.dataset.after);
}

// "Try it": a conversation with the chatbot, its replies streamed as written.
for (const panel of document.querySelectorAll(".try[data-chatbot]")) {
  const list = panel.querySelector(".chat");
  const form = panel.querySelector("form.ask");
  const input = form.querySelector('input[name="text"]');
  let conversation = null;
  const shown = new Set();

  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    const text = input.value.trim();
    if (!text) return;
    input.value = "";
    bubble(list, "user", text);
    const body = { text };
    if (conversation) body.conversation_id = conversation;
    const response = await api(`/chatbots/${panel.dataset.chatbot}/messages`, {
      method: "POST",
      headers: { "Content-Type": "application/json" },
      body: JSON.stringify(body),
    });
    if (!response.ok) {
      bubble(list, "assistant error", "Not sent: " + (await failureOf(response)));
      return;
    }
    const sent = await response.json();
    shown.add(sent.message_id);
    if (!conversation) {
      conversation = sent.conversation_id;
      follow(list, conversation, sent.message_id, shown);
    }
  });
}
