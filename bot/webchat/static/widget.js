/*!
 * FusionDesk web chat widget.
 *
 * Embed with one tag (see README "Web chat widget"):
 *   <script src="https://HOST:8080/webchat/widget.js" data-server-url="https://HOST:5005"
 *           data-title="Help" data-primary-color="#1f5fbf" data-initial-payload="/greet"></script>
 * or, with data-auto-init="false", call FusionDeskChat.init({serverUrl: ..., title: ...}).
 *
 * It talks to Rasa's socket.io channel (bot.channels.webchat.WebChatInput) through
 * socket.io-client, loaded from the same folder as this file. Everything the bot or the user
 * wrote is put on the page with textContent / DOM nodes, never as HTML.
 */
(function () {
  "use strict";

  var currentScript = document.currentScript;
  // Folder this file was loaded from, e.g. "https://host:8080/webchat/".
  var ASSETS_BASE = currentScript && currentScript.src
    ? new URL(".", currentScript.src).href
    : new URL("/webchat/", window.location.href).href;

  var DEFAULTS = {
    serverUrl: "",            // Rasa server; default: the host this file came from, port 5005
    socketPath: "/socket.io", // socketio_path in credentials.yml
    title: "Chat with us",
    primaryColor: "#1f5fbf",
    initialPayload: "",       // sent (not shown) when a new conversation opens, e.g. "/greet"
    historyUrl: "",           // default: ASSETS_BASE + "history/"; "none" turns it off
    placeholder: "Type your message…",
    open: false,              // open the chat panel at page load
    storageKey: "",           // default: "fusiondesk-webchat:" + serverUrl
    assetsUrl: ""             // where widget.css and vendor/ are; default: ASSETS_BASE
  };

  var TURN_COMPLETE_EVENT = "bot_turn_complete";
  var TYPING_MAX_MS = 30000;       // hide the typing dots if no reply comes at all
  var TYPING_AFTER_REPLY_MS = 1500; // servers without bot_turn_complete: hide after a pause
  var MAX_ENTRIES = 200;
  var MAX_INPUT_CHARS = 2000;

  // ---------------------------------------------------------------- helpers

  function el(tag, className, text) {
    var node = document.createElement(tag);
    if (className) node.className = className;
    if (text !== undefined && text !== null) node.textContent = String(text);
    return node;
  }

  /** The URL as a string when it is http(s), else null (no javascript:, data:, ...). */
  function safeUrl(value) {
    if (typeof value !== "string" || !value) return null;
    try {
      var url = new URL(value, window.location.href);
      return url.protocol === "http:" || url.protocol === "https:" ? url.href : null;
    } catch (e) {
      return null;
    }
  }

  function link(href, label) {
    var a = el("a", "fd-link", label);
    a.href = href;
    a.target = "_blank";
    a.rel = "noopener noreferrer";
    return a;
  }

  // Markdown links [label](url) and bare http(s) URLs become links; all else stays text.
  var LINK_RE = /\[([^\]\n]{1,200})\]\(([^)\s]{1,2000})\)|(https?:\/\/[^\s<>"']+)/g;

  function appendRichText(parent, text) {
    var last = 0;
    var match;
    LINK_RE.lastIndex = 0;
    while ((match = LINK_RE.exec(text)) !== null) {
      var raw = match[0];
      var label = match[1];
      var href = match[2];
      var end = match.index + raw.length;
      if (match[3]) {
        // Leave sentence punctuation after a bare URL outside the link.
        var trimmed = raw.replace(/[.,;:!?)\]]+$/, "");
        end = match.index + trimmed.length;
        href = trimmed;
        label = trimmed;
        LINK_RE.lastIndex = end;
      }
      var target = safeUrl(href);
      if (!target) continue;
      if (match.index > last) parent.appendChild(document.createTextNode(text.slice(last, match.index)));
      parent.appendChild(link(target, label));
      last = end;
    }
    if (last < text.length) parent.appendChild(document.createTextNode(text.slice(last)));
  }

  function readStore(key) {
    try {
      var raw = window.localStorage.getItem(key);
      var data = raw ? JSON.parse(raw) : null;
      return data && typeof data === "object" ? data : {};
    } catch (e) {
      return {}; // storage disabled or corrupt: start afresh rather than break
    }
  }

  function writeStore(key, data) {
    try {
      window.localStorage.setItem(key, JSON.stringify(data));
    } catch (e) {
      /* storage full or disabled: the chat still works for this page view */
    }
  }

  /** Black or white, whichever reads better on `color` (#rgb or #rrggbb). */
  function contrastColor(color) {
    var m = /^#([0-9a-f]{3}|[0-9a-f]{6})$/i.exec(String(color).trim());
    if (!m) return "#ffffff";
    var hex = m[1].length === 3 ? m[1].replace(/(.)/g, "$1$1") : m[1];
    var rgb = [0, 2, 4].map(function (i) {
      var c = parseInt(hex.substr(i, 2), 16) / 255;
      return c <= 0.03928 ? c / 12.92 : Math.pow((c + 0.055) / 1.055, 2.4);
    });
    var luminance = 0.2126 * rgb[0] + 0.7152 * rgb[1] + 0.0722 * rgb[2];
    return luminance > 0.4 ? "#111111" : "#ffffff";
  }

  var ioPromise = null;

  /** Load socket.io-client (vendor/socket.io.min.js beside this file) once per page. */
  function loadSocketIo(assetsUrl) {
    if (window.io && typeof window.io === "function") return Promise.resolve(window.io);
    if (ioPromise) return ioPromise;
    ioPromise = new Promise(function (resolve, reject) {
      var tag = document.createElement("script");
      tag.src = new URL("vendor/socket.io.min.js", assetsUrl).href;
      tag.async = true;
      // The bundle is UMD: on a page with an AMD loader it would register a module instead of
      // setting window.io, so hide `define` while it runs.
      var savedDefine = window.define;
      var amd = typeof savedDefine === "function" && savedDefine.amd;
      if (amd) window.define = undefined;
      function restore() { if (amd) window.define = savedDefine; }
      tag.onload = function () {
        restore();
        if (typeof window.io === "function") resolve(window.io);
        else reject(new Error("socket.io client did not load"));
      };
      tag.onerror = function () {
        restore();
        ioPromise = null;
        reject(new Error("cannot load " + tag.src));
      };
      document.head.appendChild(tag);
    });
    return ioPromise;
  }

  function entryKey(entry) {
    return JSON.stringify({ role: entry.role, text: entry.text, payload: entry.payload });
  }

  // ---------------------------------------------------------------- widget

  function Widget(options) {
    this.options = options;
    this.storageKey = options.storageKey;
    var stored = readStore(this.storageKey);
    this.state = {
      sessionId: typeof stored.sessionId === "string" ? stored.sessionId : null,
      entries: Array.isArray(stored.entries) ? stored.entries.slice(-MAX_ENTRIES) : [],
      open: stored.open === true,
      greeted: stored.greeted === true
    };
    this.socket = null;
    this.ready = false;          // session confirmed: messages can be sent
    this.everConnected = false;
    this.unread = 0;
    this.typingTimer = null;
    this.syncing = null;         // entries added while a history sync is in flight
    this.build();
    this.renderAll();
    if (this.state.open || options.open) this.open(false);
    // A returning visitor reconnects at once (an agent may have answered meanwhile);
    // a new one when the chat is first opened.
    else if (this.state.sessionId) this.connect();
  }

  Widget.prototype.save = function () {
    writeStore(this.storageKey, {
      sessionId: this.state.sessionId,
      entries: this.state.entries.slice(-MAX_ENTRIES),
      open: this.state.open,
      greeted: this.state.greeted
    });
  };

  Widget.prototype.build = function () {
    var self = this;
    var o = this.options;
    var host = el("div");
    host.className = "fusiondesk-chat";
    host.style.setProperty("--fd-primary", o.primaryColor);
    host.style.setProperty("--fd-on-primary", contrastColor(o.primaryColor));
    var root = host.attachShadow ? host.attachShadow({ mode: "open" }) : host;
    var css = document.createElement("link");
    css.rel = "stylesheet";
    css.href = new URL("widget.css", o.assetsUrl).href;
    var wrap = el("div", "fd-root");
    wrap.style.visibility = "hidden"; // until widget.css is in: no unstyled flash
    css.onload = css.onerror = function () {
      wrap.style.visibility = "";
      self.scrollToEnd(); // the log's height is known only now
    };
    root.appendChild(css);
    root.appendChild(wrap);

    var uid = "fd-" + Math.random().toString(36).slice(2, 8);

    var launcher = el("button", "fd-launcher");
    launcher.type = "button";
    launcher.setAttribute("aria-expanded", "false");
    launcher.setAttribute("aria-controls", uid + "-panel");
    launcher.setAttribute("aria-label", "Open chat: " + o.title);
    launcher.appendChild(svgIcon("chat"));
    var badge = el("span", "fd-badge");
    badge.hidden = true;
    badge.setAttribute("aria-hidden", "true");
    launcher.appendChild(badge);

    var panel = el("div", "fd-panel");
    panel.id = uid + "-panel";
    panel.hidden = true;
    panel.setAttribute("role", "dialog");
    panel.setAttribute("aria-modal", "false");
    panel.setAttribute("aria-labelledby", uid + "-title");

    var header = el("div", "fd-header");
    var heading = el("h2", "fd-title", o.title);
    heading.id = uid + "-title";
    var close = el("button", "fd-close");
    close.type = "button";
    close.setAttribute("aria-label", "Close chat");
    close.appendChild(svgIcon("close"));
    header.appendChild(heading);
    header.appendChild(close);

    var status = el("div", "fd-status");
    status.setAttribute("role", "status");
    status.hidden = true;

    var log = el("div", "fd-log");
    log.setAttribute("role", "log");
    log.setAttribute("aria-live", "polite");
    log.setAttribute("aria-label", "Conversation");
    log.tabIndex = 0; // scrollable by keyboard

    var typing = el("div", "fd-typing");
    typing.hidden = true;
    typing.setAttribute("role", "status");
    typing.appendChild(el("span", "fd-sr", "The assistant is typing…"));
    var dots = el("span", "fd-dots");
    dots.setAttribute("aria-hidden", "true");
    dots.appendChild(el("span"));
    dots.appendChild(el("span"));
    dots.appendChild(el("span"));
    typing.appendChild(dots);

    var form = el("form", "fd-form");
    form.setAttribute("novalidate", "");
    var label = el("label", "fd-sr", "Your message");
    label.htmlFor = uid + "-input";
    var input = el("textarea", "fd-input");
    input.id = uid + "-input";
    input.rows = 1;
    input.maxLength = MAX_INPUT_CHARS;
    input.placeholder = o.placeholder;
    input.setAttribute("autocomplete", "off");
    var send = el("button", "fd-send");
    send.type = "submit";
    send.setAttribute("aria-label", "Send message");
    send.appendChild(svgIcon("send"));
    form.appendChild(label);
    form.appendChild(input);
    form.appendChild(send);

    panel.appendChild(header);
    panel.appendChild(status);
    panel.appendChild(log);
    panel.appendChild(typing);
    panel.appendChild(form);
    wrap.appendChild(panel);
    wrap.appendChild(launcher);

    launcher.addEventListener("click", function () {
      if (self.state.open) self.close(true); else self.open(true);
    });
    close.addEventListener("click", function () { self.close(true); });
    panel.addEventListener("keydown", function (event) {
      if (event.key === "Escape") { event.preventDefault(); self.close(true); }
    });
    form.addEventListener("submit", function (event) {
      event.preventDefault();
      self.submitInput();
    });
    input.addEventListener("keydown", function (event) {
      // Enter sends; Shift+Enter makes a new line; never while an IME is composing.
      if (event.key === "Enter" && !event.shiftKey && !event.isComposing) {
        event.preventDefault();
        self.submitInput();
      }
    });
    input.addEventListener("input", function () { self.autosize(); });

    // Keep the newest message in view when the log gets shorter (status line, keyboard on
    // phones), unless the reader scrolled up.
    this.stickToEnd = true;
    log.addEventListener("scroll", function () {
      self.stickToEnd = log.scrollTop + log.clientHeight >= log.scrollHeight - 24;
    });
    if (window.ResizeObserver) {
      new ResizeObserver(function () { if (self.stickToEnd) self.scrollToEnd(); }).observe(log);
    }

    this.dom = {
      host: host, launcher: launcher, badge: badge, panel: panel, status: status, log: log,
      typing: typing, input: input, send: send
    };
    (document.body || document.documentElement).appendChild(host);
  };

  function svgIcon(name) {
    var ns = "http://www.w3.org/2000/svg";
    var svg = document.createElementNS(ns, "svg");
    svg.setAttribute("viewBox", "0 0 24 24");
    svg.setAttribute("aria-hidden", "true");
    svg.setAttribute("focusable", "false");
    svg.setAttribute("class", "fd-icon");
    var path = document.createElementNS(ns, "path");
    var d = {
      chat: "M4 4h16a2 2 0 0 1 2 2v10a2 2 0 0 1-2 2H9l-5 4v-4H4a2 2 0 0 1-2-2V6a2 2 0 0 1 2-2z",
      close: "M6.4 5 5 6.4 10.6 12 5 17.6 6.4 19l5.6-5.6 5.6 5.6 1.4-1.4-5.6-5.6L19 6.4 17.6 5 12 10.6z",
      send: "M3 20.5 21 12 3 3.5v6.6l12 1.9-12 1.9z"
    }[name];
    path.setAttribute("d", d);
    svg.appendChild(path);
    return svg;
  }

  Widget.prototype.autosize = function () {
    var input = this.dom.input;
    input.style.height = "auto";
    input.style.height = Math.min(input.scrollHeight, 120) + "px";
  };

  // ------------------------------------------------------------ open / close

  Widget.prototype.open = function (moveFocus) {
    this.state.open = true;
    this.dom.panel.hidden = false;
    this.dom.host.classList.add("fd-is-open");
    this.dom.launcher.setAttribute("aria-expanded", "true");
    this.dom.launcher.setAttribute("aria-label", "Close chat: " + this.options.title);
    this.setUnread(0);
    this.save();
    this.scrollToEnd();
    if (moveFocus !== false) this.dom.input.focus();
    this.connect();
  };

  Widget.prototype.close = function (moveFocus) {
    this.state.open = false;
    this.dom.panel.hidden = true;
    this.dom.host.classList.remove("fd-is-open");
    this.dom.launcher.setAttribute("aria-expanded", "false");
    this.dom.launcher.setAttribute("aria-label", "Open chat: " + this.options.title);
    this.save();
    if (moveFocus) this.dom.launcher.focus();
  };

  Widget.prototype.setUnread = function (count) {
    this.unread = count;
    this.dom.badge.hidden = count === 0;
    this.dom.badge.textContent = count > 9 ? "9+" : String(count);
    var label = (this.state.open ? "Close chat: " : "Open chat: ") + this.options.title;
    if (count) label += " (" + count + (count === 1 ? " new message)" : " new messages)");
    this.dom.launcher.setAttribute("aria-label", label);
  };

  // -------------------------------------------------------------- connection

  Widget.prototype.setStatus = function (text) {
    this.dom.status.textContent = text || "";
    this.dom.status.hidden = !text;
    this.dom.host.classList.toggle("fd-is-offline", !!text);
  };

  Widget.prototype.connect = function () {
    var self = this;
    if (this.socket || this.connecting) return;
    this.connecting = true;
    this.setStatus("Connecting…");
    loadSocketIo(this.options.assetsUrl).then(function (io) {
      self.connecting = false;
      self.attachSocket(io);
    }, function () {
      self.connecting = false;
      self.setStatus("Reconnecting…");
      // The script host is unreachable for now: try again shortly.
      setTimeout(function () { self.connect(); }, 5000);
    });
  };

  Widget.prototype.attachSocket = function (io) {
    var self = this;
    var socket = io(this.options.serverUrl, {
      path: this.options.socketPath,
      transports: ["websocket", "polling"],
      tryAllTransports: true,
      reconnection: true,
      reconnectionDelay: 500,
      reconnectionDelayMax: 4000,
      timeout: 8000
    });
    this.socket = socket;

    socket.on("connect", function () {
      self.everConnected = true;
      socket.emit("session_request", { session_id: self.state.sessionId });
    });

    socket.on("session_confirm", function (sessionId) {
      var id = typeof sessionId === "string" ? sessionId : (sessionId && sessionId.session_id);
      if (!id) return;
      var resumed = id === self.state.sessionId;
      if (!resumed) {
        // A new conversation (first visit, or the server refused the old id).
        self.state.sessionId = id;
        self.state.greeted = false;
        self.state.entries = self.state.entries.filter(function (e) { return e.pending; });
        self.renderAll();
      }
      self.ready = true;
      self.setStatus("");
      self.save();
      // Show the server's history first, then send what was typed while offline.
      (resumed ? self.syncHistory() : Promise.resolve()).then(function () {
        if (self.ready) self.flushOutbox();
      });
      if (!self.state.greeted && self.options.initialPayload) {
        self.state.greeted = true;
        self.save();
        self.emitMessage(self.options.initialPayload, { hidden: true });
        self.showTyping();
      }
    });

    socket.on("bot_uttered", function (payload) {
      if (!payload || typeof payload !== "object") return;
      self.addEntry({ role: "bot", payload: payload });
      self.typingAfterReply();
      if (!self.state.open) self.setUnread(self.unread + 1);
    });

    socket.on(TURN_COMPLETE_EVENT, function () { self.hideTyping(); });

    socket.on("disconnect", function (reason) {
      self.ready = false;
      self.hideTyping();
      if (reason === "io client disconnect") return;
      self.setStatus("Reconnecting…");
      // After a server-side disconnect socket.io does not retry by itself.
      if (reason === "io server disconnect") socket.connect();
    });

    socket.on("connect_error", function () {
      self.ready = false;
      self.setStatus(self.everConnected ? "Reconnecting…" : "Reconnecting… (the chat server is not reachable yet)");
      if (!socket.active) setTimeout(function () { socket.connect(); }, 4000);
    });
  };

  /** Fetch the conversation from the server (the source of truth) and show it. */
  Widget.prototype.syncHistory = function () {
    var self = this;
    var base = this.options.historyUrl;
    var sessionId = this.state.sessionId;
    if (!base || !sessionId || !window.fetch || this.syncing) return Promise.resolve();
    this.syncing = [];
    var url = new URL(encodeURIComponent(sessionId), base).href;
    var abort = window.AbortController ? new AbortController() : null;
    var timer = abort && setTimeout(function () { abort.abort(); }, 8000);
    return window.fetch(url, {
      mode: "cors", credentials: "omit", cache: "no-store", signal: abort ? abort.signal : undefined
    })
      .then(function (response) { return response.ok ? response.json() : null; })
      .catch(function () { return null; })
      .then(function (data) {
        var during = self.syncing || [];
        self.syncing = null;
        if (!data || !Array.isArray(data.messages) || sessionId !== self.state.sessionId) return;
        // An empty history while this browser remembers messages means the server lost
        // them (e.g. an in-memory tracker store after a restart): keep what we have.
        if (!data.messages.length && self.state.entries.length) return;
        var entries = data.messages.filter(function (e) {
          return e && (e.role === "user" || e.role === "bot");
        });
        // Messages that arrived or were sent while fetching: keep those history lacks.
        var tail = {};
        entries.slice(-20).forEach(function (e) {
          var k = entryKey(e);
          tail[k] = (tail[k] || 0) + 1;
        });
        during.forEach(function (e) {
          var k = entryKey(e);
          if (tail[k]) tail[k] -= 1; else entries.push(e);
        });
        self.state.entries.forEach(function (e) {
          if (e.pending && entries.indexOf(e) < 0) entries.push(e);
        });
        self.state.entries = entries.slice(-MAX_ENTRIES);
        self.save();
        self.renderAll();
      })
      .catch(function () { self.syncing = null; })
      .then(function () { clearTimeout(timer); });
  };

  // --------------------------------------------------------------- messages

  Widget.prototype.submitInput = function () {
    var text = this.dom.input.value;
    if (!text.trim()) return;
    this.dom.input.value = "";
    this.autosize();
    this.send(text.trim());
  };

  /**
   * Send `text` to the bot. `display` is what the transcript shows instead (a button's
   * title for its payload); `hidden` sends without showing anything.
   */
  Widget.prototype.send = function (text, display) {
    if (typeof text !== "string" || !text.trim()) return;
    var entry = { role: "user", text: display || text };
    if (display) entry.payload_text = text;
    if (!this.ready) entry.pending = true;
    this.addEntry(entry);
    if (this.ready) {
      this.emitMessage(text, display ? { display: display } : null);
      this.showTyping();
    } else {
      this.connect();
    }
  };

  Widget.prototype.emitMessage = function (text, webchatMetadata) {
    var data = { message: text, session_id: this.state.sessionId };
    if (webchatMetadata) data.metadata = { webchat: webchatMetadata };
    this.socket.emit("user_uttered", data);
  };

  /** Send what was typed while disconnected, in order. */
  Widget.prototype.flushOutbox = function () {
    var self = this;
    var sent = false;
    this.state.entries.forEach(function (entry) {
      if (!entry.pending) return;
      delete entry.pending;
      var text = entry.payload_text || entry.text;
      self.emitMessage(text, entry.payload_text ? { display: entry.text } : null);
      sent = true;
    });
    if (sent) {
      this.save();
      this.renderAll();
      this.showTyping();
    }
  };

  Widget.prototype.addEntry = function (entry) {
    this.state.entries.push(entry);
    if (this.state.entries.length > MAX_ENTRIES) {
      this.state.entries = this.state.entries.slice(-MAX_ENTRIES);
    }
    if (this.syncing && !entry.pending) this.syncing.push(entry);
    this.save();
    this.dom.log.appendChild(this.renderEntry(entry, this.state.entries.length - 1));
    this.refreshChoices();
    this.scrollToEnd();
  };

  Widget.prototype.renderAll = function () {
    var log = this.dom.log;
    while (log.firstChild) log.removeChild(log.firstChild);
    var self = this;
    this.state.entries.forEach(function (entry, index) {
      log.appendChild(self.renderEntry(entry, index));
    });
    this.refreshChoices();
    this.scrollToEnd();
  };

  Widget.prototype.renderEntry = function (entry, index) {
    var self = this;
    var row = el("div", "fd-msg");
    row.setAttribute("data-index", String(index));
    if (entry.role === "user") {
      row.classList.add("fd-msg--user");
      row.appendChild(el("span", "fd-sr", "You: "));
      var bubble = el("div", "fd-bubble", entry.text); // plain text, always
      row.appendChild(bubble);
      if (entry.pending) {
        row.classList.add("fd-msg--pending");
        row.appendChild(el("div", "fd-note", "Not sent yet — it will be sent when the connection is back."));
      }
      return row;
    }
    var payload = entry.payload || {};
    var meta = payload.metadata && typeof payload.metadata === "object" ? payload.metadata : {};
    if (meta.from_human === true) {
      row.classList.add("fd-msg--agent");
      var name = typeof meta.agent_name === "string" && meta.agent_name.trim() ? meta.agent_name.trim() : "Agent";
      row.appendChild(el("div", "fd-sender", name + " · agent"));
    } else {
      row.classList.add("fd-msg--bot");
      row.appendChild(el("span", "fd-sr", "Assistant: "));
    }
    var rendered = false;
    if (typeof payload.text === "string" && payload.text) {
      var text = el("div", "fd-bubble");
      appendRichText(text, payload.text);
      row.appendChild(text);
      rendered = true;
    }
    var attachment = payload.attachment;
    if (attachment && typeof attachment === "object") {
      var node = this.renderAttachment(attachment);
      if (node) { row.appendChild(node); rendered = true; }
    }
    var choices = payload.quick_replies || payload.buttons;
    if (Array.isArray(choices) && choices.length) {
      var group = el("div", "fd-choices");
      group.setAttribute("role", "group");
      group.setAttribute("aria-label", "Suggested replies");
      choices.forEach(function (choice) {
        if (!choice || typeof choice !== "object") return;
        var title = String(choice.title || choice.payload || "");
        var href = choice.type === "web_url" ? safeUrl(choice.url) : null;
        if (href) { group.appendChild(link(href, title)); return; }
        var value = typeof choice.payload === "string" && choice.payload ? choice.payload : title;
        if (!title) return;
        var button = el("button", "fd-choice", title);
        button.type = "button";
        button.addEventListener("click", function () {
          if (button.disabled) return;
          self.send(value, title);
          self.dom.input.focus();
        });
        group.appendChild(button);
      });
      row.appendChild(group);
      row.setAttribute("data-choices", "true");
      rendered = true;
    }
    if (!rendered) row.hidden = true; // unknown custom payload: nothing to show
    return row;
  };

  Widget.prototype.renderAttachment = function (attachment) {
    var payload = attachment.payload || {};
    if (attachment.type === "image") {
      var src = safeUrl(payload.src || payload.url);
      if (!src) return null;
      var img = el("img", "fd-image");
      img.src = src;
      img.alt = typeof payload.alt === "string" && payload.alt ? payload.alt : "Image from the assistant";
      img.loading = "lazy";
      img.referrerPolicy = "no-referrer";
      img.addEventListener("load", this.scrollToEnd.bind(this));
      return img;
    }
    if (attachment.type === "template" && payload.elements) {
      var self = this;
      var list = el("div", "fd-cards");
      [].concat(payload.elements).forEach(function (element) {
        if (!element || typeof element !== "object") return;
        var card = el("div", "fd-card");
        var image = safeUrl(element.image_url);
        if (image) {
          var pic = el("img", "fd-image");
          pic.src = image;
          pic.alt = "";
          pic.referrerPolicy = "no-referrer";
          card.appendChild(pic);
        }
        if (element.title) card.appendChild(el("div", "fd-card-title", element.title));
        if (element.subtitle) card.appendChild(el("div", "fd-card-subtitle", element.subtitle));
        (element.buttons || []).forEach(function (b) {
          if (!b || typeof b !== "object" || !b.title) return;
          var href = safeUrl(b.url);
          if (href) { card.appendChild(link(href, b.title)); return; }
          if (typeof b.payload !== "string") return;
          var button = el("button", "fd-choice", b.title);
          button.type = "button";
          button.addEventListener("click", function () { self.send(b.payload, String(b.title)); });
          card.appendChild(button);
        });
        list.appendChild(card);
      });
      return list.childNodes.length ? list : null;
    }
    var href = safeUrl(payload.src || payload.url);
    return href ? link(href, payload.title || "Open attachment") : null;
  };

  /** Only the buttons of bot messages after the customer's last message stay clickable. */
  Widget.prototype.refreshChoices = function () {
    var lastUser = -1;
    this.state.entries.forEach(function (e, i) { if (e.role === "user") lastUser = i; });
    var rows = this.dom.log.querySelectorAll("[data-choices]");
    for (var i = 0; i < rows.length; i++) {
      var stale = Number(rows[i].getAttribute("data-index")) < lastUser;
      var buttons = rows[i].querySelectorAll("button.fd-choice");
      for (var j = 0; j < buttons.length; j++) buttons[j].disabled = stale;
    }
  };

  Widget.prototype.scrollToEnd = function () {
    var log = this.dom.log;
    log.scrollTop = log.scrollHeight;
    this.stickToEnd = true;
  };

  // ------------------------------------------------------------------ typing

  Widget.prototype.showTyping = function () {
    var self = this;
    this.dom.typing.hidden = false;
    clearTimeout(this.typingTimer);
    this.typingTimer = setTimeout(function () { self.hideTyping(); }, TYPING_MAX_MS);
    this.scrollToEnd();
  };

  Widget.prototype.typingAfterReply = function () {
    var self = this;
    if (this.dom.typing.hidden) return;
    clearTimeout(this.typingTimer);
    this.typingTimer = setTimeout(function () { self.hideTyping(); }, TYPING_AFTER_REPLY_MS);
  };

  Widget.prototype.hideTyping = function () {
    clearTimeout(this.typingTimer);
    this.dom.typing.hidden = true;
  };

  Widget.prototype.destroy = function () {
    if (this.socket) this.socket.disconnect();
    this.socket = null;
    this.hideTyping();
    if (this.dom.host.parentNode) this.dom.host.parentNode.removeChild(this.dom.host);
  };

  // ------------------------------------------------------------------ set-up

  function normalise(options) {
    var o = {};
    Object.keys(DEFAULTS).forEach(function (k) {
      o[k] = options && options[k] !== undefined && options[k] !== null && options[k] !== ""
        ? options[k] : DEFAULTS[k];
    });
    var scriptUrl = new URL(ASSETS_BASE);
    if (!o.serverUrl) o.serverUrl = scriptUrl.protocol + "//" + scriptUrl.hostname + ":5005";
    o.serverUrl = String(o.serverUrl).replace(/\/+$/, "");
    o.assetsUrl = new URL(String(o.assetsUrl || ASSETS_BASE), window.location.href).href;
    if (!/\/$/.test(o.assetsUrl)) o.assetsUrl += "/";
    if (o.historyUrl === "none" || o.historyUrl === false) o.historyUrl = "";
    else o.historyUrl = new URL(String(o.historyUrl || "history/"), o.assetsUrl).href;
    if (o.historyUrl && !/\/$/.test(o.historyUrl)) o.historyUrl += "/";
    o.open = o.open === true || o.open === "true";
    o.title = String(o.title);
    o.initialPayload = String(o.initialPayload || "");
    if (!o.storageKey) o.storageKey = "fusiondesk-webchat:" + o.serverUrl;
    return o;
  }

  function fromDataset(data) {
    return {
      serverUrl: data.serverUrl,
      socketPath: data.socketPath,
      title: data.title,
      primaryColor: data.primaryColor,
      initialPayload: data.initialPayload,
      historyUrl: data.historyUrl,
      placeholder: data.placeholder,
      open: data.open,
      storageKey: data.storageKey,
      assetsUrl: data.assetsUrl
    };
  }

  var instances = [];

  function init(options) {
    var widget = new Widget(normalise(options || {}));
    instances.push(widget);
    return {
      open: function () { widget.open(true); },
      close: function () { widget.close(false); },
      send: function (text) { widget.send(String(text)); },
      destroy: function () {
        widget.destroy();
        instances.splice(instances.indexOf(widget), 1);
      },
      get sessionId() { return widget.state.sessionId; }
    };
  }

  window.FusionDeskChat = { init: init, version: "0.1.0" };

  if (currentScript && currentScript.getAttribute("data-auto-init") !== "false") {
    var options = fromDataset(currentScript.dataset);
    var start = function () { init(options); };
    if (document.readyState === "loading") document.addEventListener("DOMContentLoaded", start);
    else start();
  }
})();
