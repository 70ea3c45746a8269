// nerve's dashboard: plain DOM, no framework, no build step.
//
// The API key lives in sessionStorage (this tab only, gone when it closes) and goes out as
// `Authorization: Bearer` on every request, the live feed included: the feed is read with
// fetch() and a streamed body rather than EventSource, which cannot send headers and would
// put the key in the URL (and so in access logs, history and proxies).
// Everything from the server is inserted with textContent, never as HTML.
"use strict";

const KEY_ITEM = "nerve.apiKey";
const BY_ITEM = "nerve.decidedBy"; // the name decisions are signed with: not a secret
const BASE = new URL(".", window.location.href); // works under a mount prefix too
const FEED_LIMIT = 200;
const POLL_MS = 2000;

const $ = (id) => document.getElementById(id);
const state = {
  key: sessionStorage.getItem(KEY_ITEM) || "",
  cursor: null,
  pattern: "",
  feed: null, // AbortController of the running feed
  polling: null,
  rows: new Map(), // event_id -> <tr> in the feed
  dlq: "", // what the dead letter table shows, to re-render only on change
  waits: "", // the same for the waiting runs
  approvals: new Map(), // approval_id -> <tr>, kept while pending (a comment typed stays)
  epoch: 0,
};

function url(path, query) {
  const u = new URL(path, BASE);
  for (const [name, value] of Object.entries(query || {})) {
    if (value !== null && value !== undefined && value !== "") u.searchParams.set(name, value);
  }
  return u;
}

async function api(path, options = {}) {
  const headers = { Accept: "application/json", ...(options.headers || {}) };
  if (state.key) headers.Authorization = `Bearer ${state.key}`;
  const response = await fetch(url(path, options.query), { ...options, headers });
  if (response.status === 401 || response.status === 403) {
    const body = await response.json().catch(() => ({}));
    throw new AuthError(body.detail || `HTTP ${response.status}`);
  }
  if (!response.ok) {
    const body = await response.json().catch(() => ({}));
    const failure = new Error(body.detail || `HTTP ${response.status}`);
    failure.status = response.status;
    throw failure;
  }
  return response.json();
}

class AuthError extends Error {}

// ---- small DOM helpers ------------------------------------------------------------------

function el(tag, attrs, ...children) {
  const node = document.createElement(tag);
  for (const [name, value] of Object.entries(attrs || {})) {
    if (name === "class") node.className = value;
    else if (name === "text") node.textContent = value;
    else if (name.startsWith("on")) node.addEventListener(name.slice(2), value);
    else node.setAttribute(name, value);
  }
  for (const child of children) {
    if (child !== null && child !== undefined) {
      node.append(typeof child === "string" ? document.createTextNode(child) : child);
    }
  }
  return node;
}

function time(iso) {
  if (!iso) return "";
  const d = new Date(iso);
  return Number.isNaN(d.getTime()) ? String(iso) : d.toLocaleTimeString([], { hour12: false });
}

// A name (event type, subscription, pattern, exception class) as text with a line-break
// opportunity after each dot and underscore and between the words of a CamelCase name, so a
// narrow column wraps it between its parts instead of clipping it or cutting a word; its
// text (textContent) stays the name. (A loop, not a regex lookbehind: Safari before 16.4
// cannot parse one, and a syntax error would stop the whole script.)
function breakable(name) {
  const text = String(name || "");
  const nodes = [];
  let start = 0;
  for (let i = 1; i < text.length; i += 1) {
    const before = text[i - 1];
    const hump = /[a-z0-9]/.test(before) && /[A-Z]/.test(text[i]);
    if (before === "." || before === "_" || hump) {
      nodes.push(document.createTextNode(text.slice(start, i)), document.createElement("wbr"));
      start = i;
    }
  }
  nodes.push(document.createTextNode(text.slice(start)));
  return nodes;
}

// A time that may be days away (a wait's deadline): the date too.
function stamp(iso) {
  if (!iso) return "";
  const d = new Date(iso);
  if (Number.isNaN(d.getTime())) return String(iso);
  return d.toLocaleString([], { month: "short", day: "numeric", hour: "2-digit", minute: "2-digit", hour12: false });
}

function short(id) {
  return id && id.length > 13 ? `…${id.slice(-12)}` : id || "";
}

const LABELS = {
  done: "done",
  pending: "pending",
  retrying: "retrying",
  dead_lettered: "dead",
  waiting: "waiting",
  cancelled: "cancelled",
};

function badges(states) {
  const names = Object.keys(states || {}).sort();
  const cell = el("td", { class: "outcomes", "data-label": "outcomes" });
  for (const name of names) {
    const s = states[name];
    const css = s === "retrying" ? "failed" : s;
    cell.append(
      el(
        "span",
        { class: `badge state-${css}`, "data-subscription": name, "data-state": s, title: `${name}: ${s}` },
        ...breakable(name),
        ` · ${LABELS[s] || s}`,
      ),
    );
  }
  return cell;
}

function notice(message, kind = "error") {
  const box = $("notice");
  box.dataset.kind = kind;
  box.textContent = message || "";
  box.hidden = !message;
}

function live(mode, text) {
  $("live").dataset.state = mode;
  $("live-text").textContent = text;
}

// ---- live feed ------------------------------------------------------------------------

function feedRow(item) {
  const traceLink = el("a", {
    class: "link mono",
    title: item.correlation_id,
    text: short(item.correlation_id),
    onclick: () => showTrace(item.correlation_id),
  });
  const row = el(
    "tr",
    { "data-event-id": item.event_id, "data-event-type": item.event_type, class: "fresh" },
    el("td", { class: "time", "data-label": "time", text: time(item.published_at) }),
    el("td", { class: "type", "data-label": "event" }, ...breakable(item.event_type)),
    el("td", { class: "id", "data-label": "id", title: item.event_id, text: short(item.event_id) }),
    el("td", { class: "correlation", "data-label": "correlation" }, traceLink),
    badges(item.states),
  );
  return row;
}

function showInFeed(item) {
  const old = state.rows.get(item.event_id);
  const row = feedRow(item);
  if (old) {
    row.className = old.className === "fresh" ? "" : old.className;
    old.replaceWith(row);
  } else {
    $("feed").tBodies[0].prepend(row);
  }
  state.rows.set(item.event_id, row);
  while (state.rows.size > FEED_LIMIT) {
    const [oldest] = state.rows.keys();
    state.rows.get(oldest).remove();
    state.rows.delete(oldest);
  }
  $("feed-empty").hidden = state.rows.size > 0;
}

// Events in the feed still waiting for an outcome: a new stream picks up following them.
function unsettled() {
  const ids = [];
  for (const [id, row] of state.rows) {
    const open = '.badge[data-state="pending"], .badge[data-state="retrying"], .badge[data-state="waiting"]';
    if (row.querySelector(open)) ids.push(id);
  }
  return ids.slice(-100);
}

// One Server-Sent Events stream, parsed by hand from a fetch() body (see the top comment).
async function follow(epoch) {
  const controller = new AbortController();
  state.feed = controller;
  let wait = 500;
  while (state.epoch === epoch) {
    try {
      const headers = { Accept: "text/event-stream" };
      if (state.key) headers.Authorization = `Bearer ${state.key}`;
      const query = { after: state.cursor, pattern: state.pattern, watch: unsettled().join(",") };
      const response = await fetch(url("ui/api/feed", query), { headers, signal: controller.signal });
      if (response.status === 401 || response.status === 403) {
        const body = await response.json().catch(() => ({}));
        throw new AuthError(body.detail || `HTTP ${response.status}`);
      }
      if (!response.ok || !response.body) throw new Error(`HTTP ${response.status}`);
      live("on", "live");
      const opened = Date.now();
      await readEvents(response.body, (name, data, id) => {
        if (id) state.cursor = id;
        if (name === "event" || name === "update") showInFeed(JSON.parse(data));
      });
      // The server ends each stream after a while: reconnect from the cursor at once,
      // unless it ended early (the server could not read its log): then back off.
      if (Date.now() - opened > 2000) wait = 500;
      else {
        await new Promise((resolve) => setTimeout(resolve, wait));
        wait = Math.min(wait * 2, 10000);
      }
    } catch (error) {
      if (state.epoch !== epoch) return;
      if (error instanceof AuthError) {
        stopAll(error.message);
        return;
      }
      live("retry", "reconnecting…");
      await new Promise((resolve) => setTimeout(resolve, wait));
      wait = Math.min(wait * 2, 10000);
    }
  }
}

async function readEvents(body, onEvent) {
  const reader = body.pipeThrough(new TextDecoderStream()).getReader();
  let buffer = "";
  for (;;) {
    const { value, done } = await reader.read();
    if (done) return;
    buffer += value.replace(/\r\n?/g, "\n");
    let end;
    while ((end = buffer.indexOf("\n\n")) >= 0) {
      const block = buffer.slice(0, end);
      buffer = buffer.slice(end + 2);
      let name = "message";
      let id = null;
      const data = [];
      for (const line of block.split("\n")) {
        if (!line || line.startsWith(":")) continue;
        const colon = line.indexOf(":");
        const field = colon < 0 ? line : line.slice(0, colon);
        const text = colon < 0 ? "" : line.slice(colon + 1).replace(/^ /, "");
        if (field === "event") name = text;
        else if (field === "data") data.push(text);
        else if (field === "id") id = text;
      }
      if (data.length) onEvent(name, data.join("\n"), id);
    }
  }
}

// ---- subscriptions and dead letters (polled) ------------------------------------------------

function rate(value) {
  return value === null || value === undefined ? "–" : value.toFixed(value >= 10 ? 0 : 2);
}

// One number of the subscriptions table, red when `alarming` is not zero.
function figure(label, text, alarming) {
  return el("td", { class: `num${alarming ? " error-type" : ""}`, "data-label": label, text });
}

async function loadSubscriptions() {
  const body = await api("ui/api/subscriptions");
  const rows = body.subscriptions.map((s) =>
    el(
      "tr",
      { "data-subscription": s.name },
      el("td", { class: "type name", "data-label": "name" }, ...breakable(s.name)),
      el("td", { class: "mono pattern", "data-label": "pattern" }, ...breakable(s.pattern)),
      figure("handled/s", rate(s.handled_per_second)),
      figure("failed/s", rate(s.failed_per_second), s.failed_per_second),
      figure("handled", String(s.handled)),
      figure("failed", String(s.failed), s.failed),
      figure("dead", String(s.dead_lettered), s.dead_lettered),
      figure("lag", s.lag === null ? "–" : String(s.lag)),
    ),
  );
  $("subscriptions").tBodies[0].replaceChildren(...rows);
}

function errorCell(entry) {
  const last = entry.errors.length ? entry.errors[entry.errors.length - 1] : null;
  if (!last) return el("td", { class: "hint", "data-label": "last error", text: "no error recorded" });
  const all = entry.errors.map((e) => `attempt ${e.attempt}: ${e.type}: ${e.message}\n${e.traceback}`);
  return el(
    "td",
    { class: "error", "data-label": "last error" },
    el("span", { class: "error-type", title: last.type }, ...breakable(last.type.split(".").pop())),
    " ",
    el("span", { class: "error-msg", text: last.message }),
    el("details", {}, el("summary", { text: "every attempt" }), el("pre", { text: all.join("\n") })),
  );
}

async function replay(entry, button) {
  const eventId = entry.event.event_id;
  const path = `ui/api/events/${encodeURIComponent(eventId)}`;
  button.disabled = true;
  button.textContent = "Replaying…";
  try {
    const before = await api(path).catch(() => null);
    const seen = before ? before.outcomes.filter((o) => o.subscription === entry.subscription).length : 0;
    await api(`dlq/${encodeURIComponent(eventId)}/replay`, {
      method: "POST",
      query: { subscription: entry.subscription },
    });
    button.closest("tr").remove();
    watch(path, entry.subscription, seen);
    await loadDeadLetters();
  } catch (error) {
    button.disabled = false;
    button.textContent = "Replay";
    notice(`Replay failed: ${error.message}`);
  }
}

// After a replay, follow the event until the subscription records a new final outcome (the
// feed's stream follows only events that have not settled yet, and this one had).
async function watch(path, subscription, seen) {
  for (let i = 0; i < 120; i += 1) {
    await new Promise((resolve) => setTimeout(resolve, 500));
    try {
      const item = await api(path);
      showInFeed(item);
      const mine = item.outcomes.filter((o) => o.subscription === subscription);
      if (mine.length > seen && mine[mine.length - 1].state !== "retrying") return;
    } catch {
      return;
    }
  }
}

async function loadDeadLetters() {
  const body = await api("dlq", { query: { limit: 200 } });
  const entries = body.dead_letters;
  // Re-render only when the queue changed, so an opened "every attempt" stays open.
  const signature = JSON.stringify(entries.map((e) => [e.event.event_id, e.subscription, e.dead_at]));
  if (signature === state.dlq) return;
  state.dlq = signature;
  const rows = entries.map((entry) => {
    const button = el("button", { class: "small", type: "button", text: "Replay" });
    button.addEventListener("click", () => replay(entry, button));
    return el(
      "tr",
      { "data-event-id": entry.event.event_id, "data-subscription": entry.subscription },
      el("td", { class: "time", "data-label": "dead at", text: time(entry.dead_at) }),
      el(
        "td",
        { class: "event", "data-label": "event" },
        el("div", { class: "type" }, ...breakable(entry.event.event_type)),
        el("a", {
          class: "link id",
          title: entry.event.event_id,
          text: short(entry.event.event_id),
          onclick: () => showTrace(entry.event.correlation_id),
        }),
      ),
      el("td", { class: "subscription", "data-label": "subscription" }, ...breakable(entry.subscription)),
      el("td", { class: "num", "data-label": "attempts", text: String(entry.attempts) }),
      errorCell(entry),
      el("td", { class: "action" }, button),
    );
  });
  $("dlq").tBodies[0].replaceChildren(...rows);
  $("dlq-empty").hidden = entries.length > 0;
  $("dlq-count").textContent = String(entries.length);
  $("dlq-count").classList.toggle("some", entries.length > 0);
}

// ---- approvals and waiting runs (polled) ----------------------------------------------------

function said(message, kind = "info") {
  const line = $("approvals-said");
  line.dataset.kind = kind;
  line.textContent = message;
  line.hidden = !message;
}

// The trace of a run known by its event id (the lists carry the id, the trace wants the chain).
async function traceOfEvent(eventId) {
  try {
    const item = await api(`ui/api/events/${encodeURIComponent(eventId)}`);
    await showTrace(item.correlation_id);
  } catch (error) {
    notice(`Could not load the trace: ${error.message}`);
  }
}

function runCell(label, subscription, eventId, eventType) {
  return el(
    "td",
    { class: "run", "data-label": label },
    el("div", { class: "subscription" }, ...breakable(subscription)),
    eventType ? el("div", { class: "type" }, ...breakable(eventType)) : null,
    el("a", { class: "link id", title: eventId, text: short(eventId), onclick: () => traceOfEvent(eventId) }),
  );
}

function payloadSummary(payload) {
  const text = JSON.stringify(payload);
  return text && text.length > 60 ? `${text.slice(0, 59)}…` : text || "null";
}

function approvalRow(item) {
  const comment = el("input", {
    class: "comment",
    placeholder: "comment (optional)",
    maxlength: "4000",
    spellcheck: "false",
    "aria-label": `comment on ${item.name}`,
  });
  const approve = el("button", { class: "small", type: "button", text: "Approve" });
  const reject = el("button", { class: "small quiet danger", type: "button", text: "Reject" });
  const row = el(
    "tr",
    { "data-approval-id": item.approval_id, "data-event-id": item.event_id },
    el("td", { class: "time", "data-label": "asked", text: stamp(item.requested_at) }),
    el(
      "td",
      { class: "approval", "data-label": "approval" },
      el("div", { class: "type" }, ...breakable(item.name)),
      el(
        "details",
        {},
        el("summary", { class: "mono", text: payloadSummary(item.payload) }),
        el("pre", { text: JSON.stringify(item.payload, null, 2) }),
      ),
    ),
    runCell("run", item.subscription, item.event_id, null),
    el("td", { class: "time", "data-label": "until", text: item.expires_at ? stamp(item.expires_at) : "never" }),
    el("td", { class: "decide" }, comment, el("div", { class: "buttons" }, approve, reject)),
  );
  approve.addEventListener("click", () => decide(item, "approve", row));
  reject.addEventListener("click", () => decide(item, "reject", row));
  return row;
}

async function decide(item, decision, row) {
  const buttons = [...row.querySelectorAll("button")];
  for (const button of buttons) button.disabled = true;
  const by = $("by").value.trim();
  const comment = row.querySelector("input.comment").value.trim();
  try {
    const got = await api(`approvals/${encodeURIComponent(item.approval_id)}`, {
      method: "POST",
      headers: { "Content-Type": "application/json" },
      body: JSON.stringify({ decision, by: by || null, comment: comment || null }),
    });
    said(`${item.name}: ${got.status}${got.by ? ` by ${got.by}` : ""}.`);
    forgetApproval(item.approval_id);
  } catch (error) {
    if (error.status === 409) {
      said(`${item.name} was not pending any more: ${error.message}`, "error");
      forgetApproval(item.approval_id);
    } else {
      for (const button of buttons) button.disabled = false;
      said(`Could not ${decision} ${item.name}: ${error.message}`, "error");
    }
  }
  await Promise.all([loadApprovals(), loadWaits()]).catch(() => {});
}

function forgetApproval(approvalId) {
  const row = state.approvals.get(approvalId);
  if (row) row.remove();
  state.approvals.delete(approvalId);
  countApprovals();
}

function countApprovals() {
  const n = state.approvals.size;
  $("approvals-empty").hidden = n > 0;
  $("approvals-count").textContent = String(n);
  $("approvals-count").classList.toggle("asking", n > 0);
}

// Rows are added and removed one by one, never re-rendered: a comment being typed stays.
async function loadApprovals() {
  const body = await api("approvals", { query: { limit: 200 } });
  const pending = new Set();
  const rows = $("approvals").tBodies[0];
  for (const item of body.approvals) {
    pending.add(item.approval_id);
    if (!state.approvals.has(item.approval_id)) {
      const row = approvalRow(item);
      rows.append(row);
      state.approvals.set(item.approval_id, row);
    }
  }
  for (const id of [...state.approvals.keys()]) {
    if (!pending.has(id)) forgetApproval(id);
  }
  countApprovals();
}

function matchText(match) {
  const parts = Object.entries(match || {}).map(([path, value]) => `${path} = ${JSON.stringify(value)}`);
  return parts.length ? parts.join(", ") : "any";
}

async function loadWaits() {
  const body = await api("waits", { query: { limit: 200 } });
  const waits = body.waits;
  const signature = JSON.stringify(waits.map((w) => [w.subscription, w.event_id, w.name, w.deadline]));
  if (signature === state.waits) return;
  state.waits = signature;
  const rows = waits.map((w) =>
    el(
      "tr",
      { "data-event-id": w.event_id, "data-subscription": w.subscription, "data-awaited": w.awaited },
      el("td", { class: "time", "data-label": "since", text: stamp(w.since) }),
      runCell("run", w.subscription, w.event_id, w.event_type),
      el(
        "td",
        { class: "awaited", "data-label": "waiting for" },
        el("div", { class: "type" }, ...breakable(w.awaited)),
        el("div", { class: "mono match", text: matchText(w.match) }),
        el("div", { class: "hint", text: w.name }),
      ),
      el("td", { class: "time", "data-label": "until", text: w.deadline ? stamp(w.deadline) : "never" }),
    ),
  );
  $("waits").tBodies[0].replaceChildren(...rows);
  $("waits-empty").hidden = waits.length > 0;
  $("waits-count").textContent = String(waits.length);
}

// ---- trace ------------------------------------------------------------------------------

function treeNode(node) {
  const r = node.record;
  const outcomes = (r.outcomes || []).map((o) => {
    const css = o.state === "retrying" ? "failed" : o.state;
    const why = o.error_type ? ` – ${o.error_type}: ${o.error_message}` : "";
    return el("span", {
      class: `badge state-${css}`,
      title: `attempt ${o.attempt}, ${(o.seconds * 1000).toFixed(1)} ms${why}`,
      text: `${o.subscription} #${o.attempt} ${LABELS[o.state] || o.state} ${(o.seconds * 1000).toFixed(0)} ms`,
    });
  });
  const pending = Object.entries(node.states)
    .filter(([, s]) => s === "pending")
    .map(([name]) => el("span", { class: "badge state-pending", text: `${name} · pending` }));
  const item = el(
    "li",
    { "data-event-id": r.event.event_id },
    el(
      "div",
      { class: "node" },
      el("span", { class: "time", text: time(r.published_at) }),
      el("span", { class: "type" }, ...breakable(r.event.event_type)),
      el("span", { class: "id", title: r.event.event_id, text: short(r.event.event_id) }),
      ...outcomes,
      ...pending,
    ),
    el(
      "details",
      {},
      el("summary", { text: "payload" }),
      el("pre", { text: JSON.stringify(r.event.payload, null, 2) }),
    ),
  );
  if (node.children.length) item.append(el("ul", {}, ...node.children.map(treeNode)));
  return item;
}

async function showTrace(correlationId) {
  if (!correlationId) return;
  $("correlation").value = correlationId;
  const tree = $("tree");
  try {
    const body = await api(`ui/api/trace/${encodeURIComponent(correlationId)}`);
    if (!body.roots.length) {
      tree.replaceChildren(el("p", { class: "empty", text: `Nothing recorded for ${correlationId}.` }));
      return;
    }
    tree.replaceChildren(el("ul", { class: "tree", "data-correlation-id": correlationId }, ...body.roots.map(treeNode)));
  } catch (error) {
    tree.replaceChildren(el("p", { class: "empty", text: `Could not load the trace: ${error.message}` }));
  }
}

// ---- lifecycle --------------------------------------------------------------------------

async function refresh(epoch) {
  try {
    await Promise.all([loadSubscriptions(), loadDeadLetters(), loadApprovals(), loadWaits()]);
    if (state.epoch === epoch) notice("");
  } catch (error) {
    if (state.epoch !== epoch) return;
    if (error instanceof AuthError) stopAll(error.message);
    else notice(`Could not reach the server: ${error.message}`);
  }
}

function stopAll(message) {
  state.epoch += 1;
  if (state.feed) state.feed.abort();
  clearInterval(state.polling);
  live(message ? "error" : "off", message ? "key refused" : "not connected");
  if (message) notice(`The API key was refused: ${message}. The dashboard needs an admin key.`);
}

function start() {
  stopAll("");
  state.dlq = "";
  state.waits = "";
  notice("");
  const epoch = state.epoch;
  live("retry", "connecting…");
  refresh(epoch);
  state.polling = setInterval(() => refresh(epoch), POLL_MS);
  follow(epoch);
}

function restartFeed() {
  state.cursor = null;
  state.rows.clear();
  $("feed").tBodies[0].replaceChildren();
  $("feed-empty").hidden = false;
  start();
}

document.addEventListener("DOMContentLoaded", () => {
  $("key").value = state.key;
  $("by").value = localStorage.getItem(BY_ITEM) || "";
  $("by").addEventListener("change", () => localStorage.setItem(BY_ITEM, $("by").value.trim()));
  $("by-form").addEventListener("submit", (e) => e.preventDefault());
  $("key-form").addEventListener("submit", (e) => {
    e.preventDefault();
    state.key = $("key").value.trim();
    sessionStorage.setItem(KEY_ITEM, state.key);
    restartFeed();
  });
  $("forget").addEventListener("click", () => {
    sessionStorage.removeItem(KEY_ITEM);
    state.key = "";
    $("key").value = "";
    stopAll("");
  });
  $("filter-form").addEventListener("submit", (e) => {
    e.preventDefault();
    state.pattern = $("pattern").value.trim();
    restartFeed();
  });
  $("trace-form").addEventListener("submit", (e) => {
    e.preventDefault();
    showTrace($("correlation").value.trim());
  });
  // A server with no keys configured takes an empty one: Connect with the box empty.
  if (state.key) start();
  else notice("Enter an admin API key and Connect (leave it empty if the server has none).", "info");
});
