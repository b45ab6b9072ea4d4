// Steward web chat widget: include this script on a page of a site the
// channel lists, and a chat bubble opens the chat in a frame.
(function () {
  "use strict";
  var script = document.currentScript;
  if (!script) return;
  var source = new URL(script.src);
  var chat = source.origin + source.pathname.replace(/\/widget\.js$/, "") + "?embedded=1";

  var button = document.createElement("button");
  button.type = "button";
  button.textContent = "Chat";
  button.setAttribute("aria-label", "Open the chat");
  button.setAttribute("aria-expanded", "false");
  button.style.cssText = "position:fixed;right:20px;bottom:20px;z-index:2147483000;padding:12px 18px;border:0;border-radius:24px;background:#1f5fbf;color:#fff;font:600 15px system-ui,sans-serif;box-shadow:0 2px 10px rgba(0,0,0,.25);cursor:pointer";

  var frame = document.createElement("iframe");
  frame.src = chat;
  frame.title = "Chat";
  frame.style.cssText = "position:fixed;right:20px;bottom:76px;z-index:2147483000;width:min(380px,calc(100vw - 40px));height:min(560px,calc(100vh - 100px));border:1px solid #d8dde4;border-radius:12px;background:#fff;box-shadow:0 4px 24px rgba(0,0,0,.2);display:none";

  function toggle(open) {
    frame.style.display = open ? "block" : "none";
    button.setAttribute("aria-expanded", String(open));
    button.setAttribute("aria-label", open ? "Close the chat" : "Open the chat");
    if (open) frame.focus();
  }
  button.addEventListener("click", function () { toggle(frame.style.display === "none"); });
  document.addEventListener("keydown", function (event) {
    if (event.key === "Escape" && frame.style.display !== "none") { toggle(false); button.focus(); }
  });
  document.body.appendChild(frame);
  document.body.appendChild(button);
})();
