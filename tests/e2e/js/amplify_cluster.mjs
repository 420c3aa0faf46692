// The real AWS Amplify JS `events` client on one node of a cluster (test_appsync_cluster.py).
// Usage: node amplify_cluster.mjs '<json options>' with options
//   {endpoint, apiKey, channel, role: "subscribe", count}  prints {"ready": true} once subscribed,
//                                                          then {"received": [...count events]}
//   {endpoint, apiKey, channel, role: "publish"}           publishes once over the WebSocket and
//                                                          once over HTTP, prints {"published": true}
import WebSocket from 'ws';
import { Amplify } from 'aws-amplify';
import { events } from 'aws-amplify/data';

// Node 20 has no global WebSocket; Amplify uses the browser API, which `ws` implements.
globalThis.WebSocket = WebSocket;

const opts = JSON.parse(process.argv[2]);
Amplify.configure({
  API: { Events: { endpoint: opts.endpoint, region: 'us-east-1', defaultAuthMode: 'apiKey', apiKey: opts.apiKey } },
});

const fail = (err) => {
  console.error('FAILED', err && (err.stack || JSON.stringify(err)));
  process.exit(1);
};
setTimeout(() => fail(new Error('timed out')), 30000).unref();

try {
  const channel = await events.connect(opts.channel);
  if (opts.role === 'subscribe') {
    const received = [];
    let resolveDone;
    const done = new Promise((resolve) => (resolveDone = resolve));
    const sub = channel.subscribe({
      next: (data) => {
        received.push(data.event);
        if (received.length === opts.count) resolveDone();
      },
      error: fail,
    });
    await sub.ready;
    console.log(JSON.stringify({ ready: true }));
    await done;
    console.log(JSON.stringify({ received }));
  } else {
    await channel.publish({ via: 'websocket', from: opts.endpoint });
    const failed = await events.post(opts.channel, { via: 'http', from: opts.endpoint });
    console.log(JSON.stringify({ published: true, failed: failed ?? null }));
  }
  channel.close();
  events.closeAll();
  process.exit(0);
} catch (err) {
  fail(err);
}
