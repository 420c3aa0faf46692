// The Node server SDK (npm `pusher`) against sockway. argv: port; stdin: one JSON command.
// Prints one JSON result.
const Pusher = require("pusher");

const port = Number(process.argv[2]);
const pusher = new Pusher({ appId: "123", key: "app-key", secret: "app-secret", host: "127.0.0.1", port, useTLS: false });

async function json(response) {
  return { status: response.status, body: await response.json() };
}

async function run(cmd) {
  if (cmd.op === "http") {
    const out = {};
    out.trigger = await json(await pusher.trigger(["news"], "ev", { a: 1 }, { info: "subscription_count" }));
    out.batch = await json(await pusher.triggerBatch([{ channel: "news", name: "b", data: { b: 2 } }]));
    out.channels = await json(await pusher.get({ path: "/channels", params: { filter_by_prefix: "ne" } }));
    out.channel = await json(await pusher.get({ path: "/channels/news", params: { info: "subscription_count" } }));
    out.terminate = await json(await pusher.terminateUserConnections("42"));
    return out;
  }
  if (cmd.op === "webhook") {
    const webhook = pusher.webhook({ headers: cmd.headers, rawBody: cmd.body });
    return { valid: webhook.isValid(), events: webhook.isValid() ? webhook.getEvents() : null };
  }
  if (cmd.op === "auth") {
    return pusher.authorizeChannel(cmd.socket_id, cmd.channel, cmd.data);
  }
  throw new Error("unknown op " + cmd.op);
}

let input = "";
process.stdin.on("data", (d) => (input += d));
process.stdin.on("end", () => {
  run(JSON.parse(input)).then(
    (r) => process.stdout.write(JSON.stringify(r) + "\n"),
    (e) => { process.stdout.write(JSON.stringify({ error: String(e), status: e.status, body: e.body }) + "\n"); process.exitCode = 1; },
  );
});
