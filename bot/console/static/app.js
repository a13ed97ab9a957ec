// FusionDesk operator console. Plain JS, no external code. Every text from a customer, the bot
// or an operator is put on the page with textContent: markup in messages is shown as text.
"use strict";

(() => {
  const $ = (id) => document.getElementById(id);
  const state = {
    csrf: null,
    operator: null,
    tickets: [],
    selected: null, // ticket id
    ticket: null, // detail of the selected ticket
    messageIds: new Set(),
    clockOffset: 0, // server time − local time, seconds
    socket: null,
    reconnectDelay: 500,
  };

  // -- helpers -----------------------------------------------------------------------------

  function el(tag, className, text) {
    const node = document.createElement(tag);
    if (className) node.className = className;
    if (text !== undefined && text !== null) node.textContent = String(text);
    return node;
  }

  function toast(message) {
    const box = $("toast");
    box.textContent = message;
    box.hidden = false;
    clearTimeout(toast.timer);
    toast.timer = setTimeout(() => { box.hidden = true; }, 5000);
  }

  function duration(seconds) {
    seconds = Math.max(0, Math.round(seconds));
    if (seconds < 60) return `${seconds} s`;
    const minutes = Math.floor(seconds / 60);
    if (minutes < 60) return `${minutes} min`;
    const hours = Math.floor(minutes / 60);
    return `${hours} h ${minutes % 60} min`;
  }

  function clock(timestamp) {
    return new Date(timestamp * 1000).toLocaleTimeString([], { hour: "2-digit", minute: "2-digit", second: "2-digit" });
  }

  function serverNow() {
    return Date.now() / 1000 + state.clockOffset;
  }

  function newId() {
    if (window.crypto && crypto.randomUUID) return crypto.randomUUID();
    return `${Date.now().toString(36)}-${Math.random().toString(36).slice(2, 12)}`;
  }

  class ApiError extends Error {
    constructor(status, body) {
      super((body && body.message) || `request failed (${status})`);
      this.status = status;
      this.code = body && body.error;
    }
  }

  async function api(method, path, body) {
    const headers = { Accept: "application/json" };
    if (body !== undefined) headers["Content-Type"] = "application/json";
    if (method !== "GET" && state.csrf) headers["X-CSRF-Token"] = state.csrf;
    const response = await fetch(`/console/api${path}`, {
      method,
      headers,
      credentials: "same-origin",
      body: body === undefined ? undefined : JSON.stringify(body),
    });
    let data = null;
    try { data = await response.json(); } catch (_) { data = null; }
    if (response.status === 401 && path !== "/login") {
      showLogin("Your session has ended. Please sign in again.");
    }
    if (!response.ok) throw new ApiError(response.status, data);
    return data;
  }

  // -- sign-in -----------------------------------------------------------------------------

  function showLogin(message) {
    state.operator = null;
    state.csrf = null;
    if (state.socket) { state.socket.onclose = null; state.socket.close(); state.socket = null; }
    $("console-view").hidden = true;
    $("whoami").hidden = true;
    $("login-view").hidden = false;
    $("login-error").textContent = message || "";
  }

  function showConsole(me) {
    state.operator = me.operator;
    state.csrf = me.csrf_token;
    $("operator-name").textContent = me.operator.name;
    $("login-view").hidden = true;
    $("whoami").hidden = false;
    $("console-view").hidden = false;
    connectLive();
    refreshQueue();
  }

  $("login-form").addEventListener("submit", async (event) => {
    event.preventDefault();
    $("login-error").textContent = "";
    try {
      const me = await api("POST", "/login", { name: $("login-name").value, password: $("login-password").value });
      $("login-password").value = "";
      showConsole(me);
    } catch (error) {
      $("login-error").textContent = error.message;
    }
  });

  $("logout").addEventListener("click", async () => {
    try { await api("POST", "/logout", {}); } catch (_) { /* signed out anyway */ }
    showLogin("Signed out.");
  });

  // -- queue -------------------------------------------------------------------------------

  const STATE_LABEL = { waiting: "waiting", with_agent: "with agent", resolved: "resolved", handed_back: "handed back" };
  const REASON_LABEL = {
    request_human: "asked for a person",
    nlu_fallback_twice: "bot did not understand twice",
    kb_no_answer: "no answer in the knowledge base",
    form_abandoned: "abandoned forms",
  };

  async function refreshQueue() {
    try {
      const data = await api("GET", "/tickets");
      state.clockOffset = data.now - Date.now() / 1000;
      state.tickets = data.tickets;
      $("queue-summary").textContent = `${data.operators_online} operator(s) online`;
      renderQueue();
    } catch (error) {
      if (error.status !== 401) toast(error.message);
    }
  }

  function ticketWait(ticket) {
    if (ticket.state === "waiting") return serverNow() - ticket.opened_at;
    return ticket.waiting_s;
  }

  function renderQueue() {
    const list = $("queue");
    list.replaceChildren();
    let waiting = 0;
    for (const ticket of state.tickets) {
      if (ticket.state === "waiting") waiting += 1;
      const item = el("li", `ticket state-${ticket.state}${ticket.id === state.selected ? " selected" : ""}`);
      item.dataset.ticketId = String(ticket.id);
      const title = el("div", "ticket-title", `#${ticket.id} · ${ticket.channel || "chat"}`);
      const badge = el("span", `state ${ticket.state}`, STATE_LABEL[ticket.state] || ticket.state);
      title.append(" ", badge);
      const meta = el("div", "ticket-meta muted");
      if (ticket.state === "waiting") {
        meta.append(el("span", "wait", `waiting ${duration(ticketWait(ticket))}`), ` · #${ticket.position} in line`);
      } else if (ticket.state === "with_agent") {
        meta.textContent = ticket.mine ? "yours" : `with ${ticket.agent_name || "another operator"}`;
      } else {
        meta.textContent = `closed ${clock(ticket.closed_at)}`;
      }
      if (ticket.after_hours) meta.append(" · after hours");
      const reason = el("div", "ticket-reason muted", REASON_LABEL[ticket.reason] || ticket.reason);
      item.append(title, meta, reason);
      if (ticket.readable) {
        item.tabIndex = 0;
        item.addEventListener("click", () => selectTicket(ticket.id));
        item.addEventListener("keydown", (e) => { if (e.key === "Enter") selectTicket(ticket.id); });
      } else {
        item.classList.add("locked");
      }
      list.append(item);
    }
    $("queue-count").textContent = String(waiting);
  }

  setInterval(() => {
    for (const node of document.querySelectorAll("#queue li.state-waiting .wait")) {
      const ticket = state.tickets.find((t) => String(t.id) === node.closest("li").dataset.ticketId);
      if (ticket) node.textContent = `waiting ${duration(ticketWait(ticket))}`;
    }
  }, 1000);

  // -- transcript ----------------------------------------------------------------------------

  async function selectTicket(ticketId) {
    state.selected = ticketId;
    renderQueue();
    await loadTicket();
  }

  async function loadTicket() {
    if (state.selected === null) return;
    try {
      const data = await api("GET", `/tickets/${state.selected}`);
      state.ticket = data.ticket;
      state.messageIds = new Set();
      $("transcript").replaceChildren();
      for (const message of data.messages) addMessage(message);
      renderTicketHead();
    } catch (error) {
      if (error.status === 403 || error.status === 404) {
        state.selected = null;
        state.ticket = null;
        $("ticket-view").hidden = true;
        $("empty-state").hidden = false;
      }
      if (error.status !== 401) toast(error.message);
    }
  }

  function renderTicketHead() {
    const ticket = state.ticket;
    $("empty-state").hidden = true;
    $("ticket-view").hidden = false;
    $("ticket-title").textContent = `Ticket #${ticket.id} — ${STATE_LABEL[ticket.state] || ticket.state}`;
    const parts = [`customer ${ticket.sender_id}`, `via ${ticket.channel || "chat"}`, REASON_LABEL[ticket.reason] || ticket.reason];
    if (ticket.agent_name) parts.push(`operator ${ticket.agent_name}`);
    if (ticket.resolution_note) parts.push(`note: ${ticket.resolution_note}`);
    $("ticket-meta").textContent = parts.join(" · ");
    const mine = ticket.state === "with_agent" && ticket.agent_id === state.operator.id;
    $("claim").hidden = ticket.state !== "waiting";
    $("release").hidden = !mine;
    $("handback").hidden = !mine;
    $("resolve-open").hidden = !mine;
    if (!mine) $("resolve-form").hidden = true;
    $("reply-text").disabled = !mine;
    $("reply-send").disabled = !mine;
    $("reply-text").placeholder = mine
      ? "Write to the customer… (Enter sends, Shift+Enter new line)"
      : ticket.state === "waiting" ? "Claim the ticket to reply." : "This ticket is closed.";
  }

  // A compact, readable form of an explanation value: numbers rounded, lists of small objects
  // as "cue 1.9, token 0.31" (e.g. syntax cues and attended tokens of the fused classifier).
  function readable(value) {
    const scalar = (v) => (typeof v === "number" ? String(Math.round(v * 1000) / 1000) : typeof v === "string" ? v : JSON.stringify(v));
    if (Array.isArray(value)) {
      return value.map((item) => (item && typeof item === "object" && !Array.isArray(item)
        ? Object.values(item).map(scalar).join(" ") : scalar(item))).join(", ");
    }
    return scalar(value);
  }

  function renderNlu(nlu) {
    const box = el("dl", "nlu");
    const add = (label, value) => {
      box.append(el("dt", null, label), el("dd", null, value));
    };
    if (nlu.intent && nlu.intent.name) {
      const confidence = typeof nlu.intent.confidence === "number" ? ` (${(nlu.intent.confidence * 100).toFixed(1)} %)` : "";
      add("intent", `${nlu.intent.name}${confidence}`);
    }
    if (Array.isArray(nlu.entities) && nlu.entities.length) {
      add("entities", nlu.entities.map((e) => `${e.entity}${e.role ? `/${e.role}` : ""}=${JSON.stringify(e.value)}`).join(", "));
    }
    if (nlu.slots && Object.keys(nlu.slots).length) {
      add("slots", Object.entries(nlu.slots).map(([k, v]) => `${k}=${JSON.stringify(v)}`).join(", "));
    }
    if (nlu.explanation !== undefined && nlu.explanation !== null) {
      const explanation = nlu.explanation;
      if (typeof explanation === "object" && !Array.isArray(explanation)) {
        for (const [key, value] of Object.entries(explanation)) add(`explanation · ${key}`, readable(value));
      } else {
        add("explanation", readable(explanation));
      }
    }
    if (Array.isArray(nlu.intent_ranking) && nlu.intent_ranking.length > 1) {
      add("ranking", nlu.intent_ranking.slice(0, 3)
        .map((r) => `${r.name} ${typeof r.confidence === "number" ? (r.confidence * 100).toFixed(0) + " %" : ""}`).join(" · "));
    }
    for (const [key, value] of Object.entries(nlu)) {
      if (["intent", "entities", "slots", "explanation", "intent_ranking"].includes(key)) continue;
      add(key, readable(value));
    }
    return box;
  }

  const AUTHOR_LABEL = { customer: "Customer", bot: "Bot", agent: "Operator", system: "System" };

  function addMessage(message) {
    if (message.ticket_id !== state.selected) return;
    const existing = document.querySelector(`#transcript li[data-message-id="${message.id}"]`);
    if (existing) {
      existing.replaceWith(messageNode(message));
      return;
    }
    state.messageIds.add(message.id);
    const list = $("transcript");
    list.append(messageNode(message));
    list.scrollTop = list.scrollHeight;
  }

  function messageNode(message) {
    const item = el("li", `message from-${message.author}`);
    item.dataset.messageId = String(message.id);
    const head = el("div", "message-head");
    const who = message.author === "agent" && message.agent_name ? `${message.agent_name} (operator)` : AUTHOR_LABEL[message.author] || message.author;
    head.append(el("span", "author", who), el("time", "muted", clock(message.created_at)));
    if (message.author === "agent" && message.delivery) {
      head.append(el("span", `delivery ${message.delivery}`, message.delivery === "delivered" ? "delivered" : "sending…"));
    }
    const body = el("div", "text", message.text);
    item.append(head, body);
    if (message.author === "customer" && message.nlu) item.append(renderNlu(message.nlu));
    return item;
  }

  // -- actions -------------------------------------------------------------------------------

  async function act(path, body) {
    try {
      const data = await api("POST", `/tickets/${state.selected}${path}`, body === undefined ? {} : body);
      await refreshQueue();
      await loadTicket();
      return data;
    } catch (error) {
      if (error.status !== 401) toast(error.message);
      if (error.status === 409 || error.status === 403) { await refreshQueue(); await loadTicket(); }
      return null;
    }
  }

  $("claim").addEventListener("click", () => act("/claim"));
  $("release").addEventListener("click", () => act("/release"));
  $("handback").addEventListener("click", () => act("/handback"));
  $("resolve-open").addEventListener("click", () => { $("resolve-form").hidden = false; $("resolve-note").focus(); });
  $("resolve-cancel").addEventListener("click", () => { $("resolve-form").hidden = true; });
  $("resolve-form").addEventListener("submit", async (event) => {
    event.preventDefault();
    const note = $("resolve-note").value.trim();
    if (!note) { toast("Write what was done for the customer."); return; }
    if (await act("/resolve", { note })) { $("resolve-note").value = ""; $("resolve-form").hidden = true; }
  });

  async function sendReply() {
    const text = $("reply-text").value.trim();
    if (!text || state.selected === null) return;
    $("reply-send").disabled = true;
    try {
      const data = await api("POST", `/tickets/${state.selected}/messages`, { text, client_msg_id: newId() });
      $("reply-text").value = "";
      addMessage(data.message);
    } catch (error) {
      if (error.status !== 401) toast(error.message);
      if (error.status === 409) await loadTicket();
    } finally {
      $("reply-send").disabled = $("reply-text").disabled;
    }
  }

  $("reply-form").addEventListener("submit", (event) => { event.preventDefault(); sendReply(); });
  $("reply-text").addEventListener("keydown", (event) => {
    if (event.key === "Enter" && !event.shiftKey) { event.preventDefault(); sendReply(); }
  });

  // -- live updates ----------------------------------------------------------------------------

  function setLive(on) {
    const badge = $("live-status");
    badge.textContent = on ? "live" : "reconnecting…";
    badge.className = `live ${on ? "on" : "off"}`;
  }

  function connectLive() {
    if (!state.operator) return;
    const scheme = location.protocol === "https:" ? "wss" : "ws";
    const socket = new WebSocket(`${scheme}://${location.host}/console/api/live`);
    state.socket = socket;
    socket.onopen = () => { state.reconnectDelay = 500; setLive(true); refreshQueue(); if (state.selected !== null) loadTicket(); };
    socket.onmessage = (event) => {
      let data;
      try { data = JSON.parse(event.data); } catch (_) { return; }
      if (data.type === "message") addMessage(data.message);
      else if (data.type === "queue") { refreshQueue(); if (state.selected !== null) loadTicket(); }
    };
    socket.onclose = (event) => {
      setLive(false);
      state.socket = null;
      if (event.code === 4401) { showLogin("Your session has ended. Please sign in again."); return; }
      setTimeout(connectLive, state.reconnectDelay);
      state.reconnectDelay = Math.min(state.reconnectDelay * 2, 10000);
    };
  }

  // -- start -------------------------------------------------------------------------------------

  api("GET", "/me").then(showConsole).catch((error) => {
    if (error.status !== 401) showLogin(error.message); else showLogin("");
  });
})();
