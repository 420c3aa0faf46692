// The sockway live console: plain ES module, no build step, no library.
// State comes from api/state; live items from the Server-Sent Events of api/stream.

const base = new URL(".", document.baseURI);
const api = (path) => new URL(path, base);
const ACTION = { "Content-Type": "application/json", "X-Sockway-Console": "1" };

let limits = { tailItems: 500 };
let apis = [];
let tail = [];        // items shown in the messages table (bounded to limits.tailItems)
let invocations = []; // bounded too
let view = "";        // "" | "c:api/id" | "h:api/channel"
let refreshTimer = null;

const $ = (sel) => document.querySelector(sel);

function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs)) {
    if (value === undefined || value === null || value === false) continue;
    if (key === "class") node.className = value;
    else if (key.startsWith("on")) node.addEventListener(key.slice(2), value);
    else node.setAttribute(key, value === true ? "" : String(value));
  }
  for (const child of children.flat()) {
    if (child === null || child === undefined) continue;
    node.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return node;
}

const time = (epochS) => new Date(epochS * 1000).toLocaleTimeString([], { hour12: false }) +
  "." + String(Math.floor((epochS * 1000) % 1000)).padStart(3, "0");
const ago = (ms) => (ms ? new Date(ms).toLocaleTimeString([], { hour12: false }) : "—");

// -- state -------------------------------------------------------------------------------

async function loadState() {
  const params = view.startsWith("c:") ? `?connection=${encodeURIComponent(view.slice(2))}`
    : view.startsWith("h:") ? `?channel=${encodeURIComponent(view.slice(2))}` : "";
  const response = await fetch(api("api/state" + params), { credentials: "same-origin" });
  if (!response.ok) throw new Error(`state: HTTP ${response.status}`);
  const state = await response.json();
  limits = state.limits;
  apis = state.apis;
  tail = state.tail;
  invocations = state.invocations;
  renderApis();
  renderForms();
  renderTail();
  renderInvocations();
}

async function refreshConnections() {
  const response = await fetch(api("api/state"), { credentials: "same-origin" });
  if (!response.ok) return;
  const state = await response.json();
  apis = state.apis;
  renderApis();
  renderForms();
}

function scheduleRefresh() {
  if (refreshTimer) return;
  refreshTimer = setTimeout(() => { refreshTimer = null; refreshConnections(); }, 250);
}

// -- APIs and connections ----------------------------------------------------------------

function renderApis() {
  const root = $("#apis");
  root.replaceChildren();
  for (const a of apis) {
    const rows = a.connections.map((c) => {
      const memberships = [
        ...c.channels.map((ch) => ch),
        ...(c.subscriptions || []),
        ...Object.entries(c.presence || {}).map(([ch, user]) => `${ch} as ${user}`),
      ];
      return el("tr", { "data-testid": "connection", "data-id": c.id },
        el("td", { class: "id" }, c.id),
        el("td", {}, c.ip),
        el("td", { class: "muted" }, c.userAgent || "—"),
        el("td", {}, ago(c.connectedAt)),
        el("td", {}, ago(c.lastActive)),
        el("td", { class: "id" }, memberships.join(", ") || "—", c.userId ? ` (user ${c.userId})` : ""),
        el("td", { class: "id" }, c.authorizer ? JSON.stringify(c.authorizer) : "—"),
        el("td", {},
          el("button", { class: "small", title: "show this connection's messages",
            onclick: () => setView(`c:${a.name}/${c.id}`) }, "tail"), " ",
          el("button", { class: "small", "data-testid": "send-to", onclick: () => pickTarget(a.name, c.id) }, "send"), " ",
          el("button", { class: "small danger", "data-testid": "disconnect",
            onclick: () => disconnect(a.name, c.id) }, "disconnect")));
    });
    root.append(el("div", { class: "api card", "data-testid": "api", "data-name": a.name },
      el("h3", {}, a.name, el("span", { class: "badge" }, a.type),
        el("span", { class: "muted" }, ` · ${a.connections.length} connection${a.connections.length === 1 ? "" : "s"}`)),
      el("div", { class: "urls" }, a.urls.map(([label, url]) => el("span", {}, `${label}: `, el("code", {}, url)))),
      rows.length ? el("table", {},
        el("thead", {}, el("tr", {}, ["id", "source IP", "user agent", "connected", "last active",
          "channels / subscriptions / presence", "authorizer", ""].map((h) => el("th", {}, h)))),
        el("tbody", {}, rows)) : el("div", { class: "empty" }, "no connections")));
  }
  renderViews();
}

function renderViews() {
  const select = $("#view");
  const options = [["", "all"]];
  const channels = new Set();
  for (const a of apis) {
    for (const c of a.connections) {
      options.push([`c:${a.name}/${c.id}`, `connection ${c.id} (${a.name})`]);
      for (const ch of c.channels) channels.add(`${a.name}/${ch}`);
    }
  }
  for (const item of tail) if (item.channel && item.channel !== "None") channels.add(`${item.api}/${item.channel}`);
  for (const ch of channels) options.push([`h:${ch}`, `channel ${ch}`]);
  if (view && !options.some(([v]) => v === view)) options.push([view, view.slice(2)]);
  select.replaceChildren(...options.map(([value, label]) => el("option", { value, selected: value === view }, label)));
}

function setView(next) {
  view = next;
  loadState();
}

// -- forms and actions -------------------------------------------------------------------

function renderForms() {
  const publishApi = $("#publish [name=api]");
  const chosen = publishApi.value;
  publishApi.replaceChildren(...apis.filter((a) => a.canPublish).map((a) =>
    el("option", { value: a.name, "data-type": a.type, selected: a.name === chosen }, `${a.name} (${a.type})`)));
  togglePusher();
  const target = $("#send [name=target]");
  const current = target.value;
  const options = [];
  for (const a of apis) for (const c of a.connections) {
    const value = `${a.name}/${c.id}`;
    options.push(el("option", { value, selected: value === current }, `${c.id} (${a.name})`));
  }
  target.replaceChildren(...options);
}

function togglePusher() {
  const option = $("#publish [name=api]").selectedOptions[0];
  $("#publish .pusher-only").hidden = !option || option.dataset.type !== "pusher";
}

function pickTarget(apiName, id) {
  $("#send [name=target]").value = `${apiName}/${id}`;
  $("#send [name=data]").focus();
}

async function post(path, body, output) {
  output.className = "";
  output.value = "…";
  try {
    const response = await fetch(api(path), { method: "POST", headers: ACTION, body: JSON.stringify(body), credentials: "same-origin" });
    const answer = await response.json().catch(() => ({}));
    if (!response.ok) throw new Error(answer.message || `HTTP ${response.status}`);
    return answer;
  } catch (error) {
    output.className = "err";
    output.value = error.message;
    return null;
  }
}

async function publish(event) {
  event.preventDefault();
  const form = event.target;
  const body = { api: form.api.value, channel: form.channel.value, data: form.data.value,
    event: form.event.value || null };
  const answer = await post("api/publish", body, form.result);
  if (answer) form.result.value = `published · delivered here to ${answer.delivered}`;
}

async function send(event) {
  event.preventDefault();
  const form = event.target;
  const [apiName, ...rest] = form.target.value.split("/");
  const answer = await post("api/send", { api: apiName, connectionId: rest.join("/"), data: form.data.value }, form.result);
  if (answer) form.result.value = "sent";
}

async function disconnect(apiName, id) {
  const output = $("#send [name=result]");
  const answer = await post("api/disconnect", { api: apiName, connectionId: id }, output);
  if (answer) { output.value = `disconnected ${id}`; scheduleRefresh(); }
}

// -- the tail ----------------------------------------------------------------------------

const DIRECTION = { message: ["→", "in"], out: ["←", "out"], publish: ["⇉", "pub"], connect: ["+", "conn"], disconnect: ["×", "conn"] };

function inView(item) {
  if (!view) return true;
  const key = view.slice(2);
  if (view.startsWith("c:")) return `${item.api}/${item.connectionId}` === key;
  return `${item.api}/${item.channel}` === key;
}

function tailRow(item) {
  const [arrow, cls] = DIRECTION[item.kind] || ["·", "conn"];
  const status = item.status == null ? "" : String(item.status);
  const payload = item.payload != null ? item.payload + (item.truncated ? ` … (${item.payloadBytes} bytes)` : "")
    : item.detail && item.detail.close_code != null ? `${item.detail.close_code} ${item.detail.close_reason || ""}` : "";
  return el("tr", { "data-testid": "tail-item", "data-kind": item.kind, "data-request": item.requestId || "",
      onclick: () => highlight(item.requestId) },
    el("td", { class: "muted" }, time(item.time)),
    el("td", { class: `dir ${cls}`, title: item.kind }, arrow),
    el("td", {}, item.api),
    el("td", { class: "id" }, item.kind === "publish" ? item.channel : item.connectionId || ""),
    el("td", { class: "id" }, item.routeKey || (item.kind === "out" ? "(sent)" : "")),
    el("td", { class: status && status !== "200" ? "status-err" : "status-ok" }, status),
    el("td", { class: "muted" }, item.latencyMs == null ? "" : item.latencyMs.toFixed(1)),
    el("td", { class: "payload", "data-testid": "payload" }, payload));
}

function renderTail() {
  const shown = tail.filter(inView).slice(-limits.tailItems).reverse();
  $("#tail").replaceChildren(...shown.map(tailRow));
  $("#tail-note").textContent = `last ${limits.tailItems} kept per view · payloads cut at ${limits.payloadMaxBytes} bytes · secrets masked`;
}

function invocationCard(inv) {
  const d = inv.detail || {};
  // data-request: the request id of the message that caused it (the link from the tail)
  return el("details", { class: "inv", "data-testid": "invocation", "data-request": d.cause || inv.requestId, "data-route": inv.routeKey },
    el("summary", {},
      el("span", { class: "muted" }, time(inv.time)),
      el("strong", {}, inv.routeKey),
      el("span", {}, inv.api),
      el("span", { class: "muted" }, d.function || ""),
      el("span", { class: `outcome-${d.outcome}` }, d.outcome),
      el("span", { class: "muted" }, `${(inv.latencyMs || 0).toFixed(1)} ms`),
      el("code", { class: "muted" }, inv.requestId)),
    el("pre", { "data-testid": "invocation-logs" }, (d.logs || []).join("\n")));
}

function renderInvocations() {
  $("#invocations").replaceChildren(...invocations.slice(-limits.tailItems).reverse().map(invocationCard));
  if (!invocations.length) $("#invocations").append(el("div", { class: "empty" }, "no handler ran yet"));
}

function highlight(requestId) {
  if (!requestId) return;
  for (const row of document.querySelectorAll("[data-request]")) {
    row.classList.toggle("hl", row.dataset.request === requestId);
    if (row.tagName === "DETAILS" && row.dataset.request === requestId) { row.open = true; row.scrollIntoView({ block: "nearest" }); }
  }
}

function push(list, item) {
  list.push(item);
  if (list.length > limits.tailItems * 4) list.splice(0, list.length - limits.tailItems * 4);
}

// -- live --------------------------------------------------------------------------------

function connectStream() {
  const live = $("#live");
  const source = new EventSource(api("api/stream"), { withCredentials: true });
  source.addEventListener("hello", () => { live.textContent = "live"; live.className = "live on"; });
  source.addEventListener("item", (message) => {
    const item = JSON.parse(message.data);
    if (item.kind === "invoke") {
      push(invocations, item);
      $("#invocations .empty")?.remove();
      $("#invocations").prepend(invocationCard(item));
      const cards = $("#invocations").children;
      while (cards.length > limits.tailItems) cards[cards.length - 1].remove();
      return;
    }
    push(tail, item);
    if (inView(item)) {
      $("#tail").prepend(tailRow(item));
      const rows = $("#tail").children;
      while (rows.length > limits.tailItems) rows[rows.length - 1].remove();
    }
    if (item.kind !== "publish") scheduleRefresh();
  });
  source.addEventListener("lagging", () => { source.close(); loadState().then(connectStream); });
  source.onerror = () => { live.textContent = "reconnecting…"; live.className = "live off"; };
}

$("#publish").addEventListener("submit", publish);
$("#publish [name=api]").addEventListener("change", togglePusher);
$("#send").addEventListener("submit", send);
$("#view").addEventListener("change", (e) => setView(e.target.value));
setInterval(refreshConnections, 5000);
loadState().then(connectStream).catch((error) => { $("#live").textContent = error.message; });
