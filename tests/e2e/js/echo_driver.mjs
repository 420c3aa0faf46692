// Laravel Echo (npm laravel-echo) over pusher-js against sockway; prints JSON reports.
// argv: host port key authBase
// An ES module: laravel-echo 2 is "type": "module" and its CommonJS build cannot be required.
import Pusher from "pusher-js";
import Echo from "laravel-echo";

const [host, port, key, authBase] = process.argv.slice(2);
const out = (msg) => process.stdout.write(JSON.stringify(msg) + "\n");

const client = new Pusher(key, {
  cluster: "local", wsHost: host, wsPort: Number(port), forceTLS: false,
  enabledTransports: ["ws"], disableStats: true,
  channelAuthorization: { endpoint: `${authBase}/pusher/auth`, transport: "ajax" },
});
const echo = new Echo({ broadcaster: "pusher", key, client });
client.connection.bind("connected", () => out({ type: "connected", socket_id: client.connection.socket_id }));

echo.channel("orders")
  .subscribed(() => out({ type: "subscribed", channel: "orders" }))
  .listen(".OrderShipped", (e) => out({ type: "event", channel: "orders", data: e }));
echo.private("room")
  .subscribed(() => out({ type: "subscribed", channel: "private-room" }))
  .listen(".Said", (e) => out({ type: "event", channel: "private-room", data: e }));
// The auth endpoint signs this one wrongly: sockway's channel-scoped subscription_error
// must reach Echo's .error() (pusher spec §1.3).
echo.private("badsig").error((e) => out({ type: "error", channel: "private-badsig", error: e }));
out({ type: "ready" });
