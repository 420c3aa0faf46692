// Drives the real AWS Amplify JS `events` client against sockway (run by test_appsync_amplify.py).
// Usage: node amplify_events.mjs <https endpoint .../event> <api key> <channel>
// Prints one JSON line: {"received": [...], "publishWs": ..., "publishHttp": ...}.
import WebSocket from 'ws';
import { Amplify } from 'aws-amplify';
import { events } from 'aws-amplify/data';

// Node 20 has no global WebSocket; Amplify uses the browser API, which `ws` implements.
globalThis.WebSocket = WebSocket;

const [endpoint, apiKey, channelName] = process.argv.slice(2);
Amplify.configure({
  API: { Events: { endpoint, region: 'us-east-1', defaultAuthMode: 'apiKey', apiKey } },
});

const fail = (err) => {
  console.error('FAILED', err && (err.stack || JSON.stringify(err)));
  process.exit(1);
};
setTimeout(() => fail(new Error('timed out')), 30000).unref();

const received = [];
let resolveDone;
const done = new Promise((resolve) => (resolveDone = resolve));

try {
  const channel = await events.connect(channelName);
  const sub = channel.subscribe({
    next: (data) => {
      received.push(data.event);
      if (received.length === 2) resolveDone();
    },
    error: fail,
  });
  await sub.ready;
  const publishWs = await channel.publish({ via: 'websocket', n: 1 });
  const publishHttp = await events.post(channelName, { via: 'http', n: 2 });
  await done;
  // A refused subscription (unknown namespace) reaches the error callback.
  const bad = await events.connect('/nowhere/x');
  const badError = await new Promise((resolve) => {
    const s = bad.subscribe({ next: () => resolve('unexpected data'), error: (e) => resolve(String(e && (e.message || e.errors?.[0]?.message || JSON.stringify(e)))) });
    s.ready.catch((e) => resolve(String(e && e.message)));
  });
  console.log(JSON.stringify({ received, publishWs, publishHttp: publishHttp ?? null, badError }));
  channel.close();
  bad.close();
  events.closeAll();
  process.exit(0);
} catch (err) {
  fail(err);
}
