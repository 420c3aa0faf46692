// Drives real pusher-js (Node build) clients for sockway's e2e tests.
// stdin: one JSON command per line; stdout: one JSON report per line.
const Pusher = require("pusher-js");
const readline = require("readline");

const [host, port, key, authBase] = process.argv.slice(2);
const clients = {};
const out = (msg) => process.stdout.write(JSON.stringify(msg) + "\n");

function connect(id, params) {
  const pusher = new Pusher(key, {
    cluster: "local",
    wsHost: host,
    wsPort: Number(port),
    forceTLS: false,
    enabledTransports: ["ws"],
    disableStats: true,
    channelAuthorization: { endpoint: `${authBase}/pusher/auth`, transport: "ajax", params: params || {} },
    userAuthentication: { endpoint: `${authBase}/pusher/user-auth`, transport: "ajax", params: params || {} },
  });
  pusher.connection.bind("state_change", (s) => out({ id, type: "state", current: s.current }));
  pusher.connection.bind("connected", () =>
    out({ id, type: "connected", socket_id: pusher.connection.socket_id }));
  pusher.connection.bind("error", (e) => out({ id, type: "error", error: e && e.data ? e.data : null }));
  clients[id] = pusher;
}

function subscribe(id, name, events) {
  const channel = clients[id].subscribe(name);
  // bind (not bind_global) receives the metadata: user_id of a presence client event.
  for (const event of events || []) {
    channel.bind(event, (data, meta) => out({ id, type: "bound_event", channel: name, event, data, user_id: meta ? meta.user_id : null }));
  }
  channel.bind("pusher:subscription_succeeded", (members) => {
    const report = { id, type: "subscribed", channel: name };
    if (members && members.count !== undefined) {
      report.count = members.count;
      report.me = members.me ? members.me.id : null;
    }
    out(report);
  });
  channel.bind("pusher:subscription_error", (e) => out({ id, type: "subscription_error", channel: name, status: e.status }));
  // A pusher:error naming the channel reaches the channel's handlers (refused client events).
  channel.bind("pusher:error", (e) => out({ id, type: "channel_error", channel: name, code: e.code, message: e.message }));
  channel.bind("pusher:member_added", (m) => out({ id, type: "member_added", channel: name, user_id: m.id, info: m.info }));
  channel.bind("pusher:member_removed", (m) => out({ id, type: "member_removed", channel: name, user_id: m.id }));
  channel.bind_global((event, data) => {
    if (event.startsWith("pusher:") || event.startsWith("pusher_internal:")) return;
    out({ id, type: "event", channel: name, event, data });
  });
}

function signin(id) {
  const pusher = clients[id];
  pusher.signin();
  pusher.user.signinDonePromise.then(() => out({ id, type: "signed_in", user: pusher.user.user_data }));
  pusher.user.bind_global((event, data) => out({ id, type: "user_event", event, data }));
  // Watchlist events (pusher_internal:watchlist_events), through pusher-js's own facade.
  for (const name of ["online", "offline"]) {
    pusher.user.watchlist.bind(name, (e) => out({ id, type: "watchlist", name: e.name, user_ids: e.user_ids }));
  }
}

readline.createInterface({ input: process.stdin }).on("line", (line) => {
  const cmd = JSON.parse(line);
  try {
    if (cmd.cmd === "connect") connect(cmd.id, cmd.params);
    else if (cmd.cmd === "subscribe") subscribe(cmd.id, cmd.channel, cmd.events);
    else if (cmd.cmd === "unsubscribe") clients[cmd.id].unsubscribe(cmd.channel);
    else if (cmd.cmd === "trigger") {
      const ok = clients[cmd.id].channel(cmd.channel).trigger(cmd.event, cmd.data);
      out({ id: cmd.id, type: "triggered", ok });
    } else if (cmd.cmd === "signin") signin(cmd.id);
    else if (cmd.cmd === "disconnect") clients[cmd.id].disconnect();
    else if (cmd.cmd === "exit") process.exit(0);
  } catch (e) {
    out({ id: cmd.id, type: "exception", message: String(e) });
  }
});
out({ type: "ready" });
