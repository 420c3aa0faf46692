// Drives the real AWS Amplify JS `events` client against an events API whose `chat` namespace
// has APPSYNC_JS code handlers and whose `direct` namespace has a Node.js Lambda onPublish
// (run by test_nodejs_appsync.py). Usage: node amplify_code_handlers.mjs '<json options>'
//   {endpoint, authToken}. Prints one JSON line with what each step saw.
import WebSocket from 'ws';
import { Amplify } from 'aws-amplify';
import { events } from 'aws-amplify/data';

globalThis.WebSocket = WebSocket; // Node 20 has no global WebSocket

const opts = JSON.parse(process.argv[2]);
Amplify.configure({
  API: { Events: { endpoint: opts.endpoint, region: 'us-east-1', defaultAuthMode: 'lambda' } },
});
const auth = { authToken: opts.authToken };
const fail = (err) => {
  console.error('FAILED', err && (err.stack || JSON.stringify(err)));
  process.exit(1);
};
setTimeout(() => fail(new Error('timed out')), 40000).unref();

const message = (e) => String(e?.errors?.[0]?.message ?? e?.message ?? JSON.stringify(e));
const received = [];
const waiters = [];
function arrived(count) {
  return new Promise((resolve) => {
    const check = () => (received.length >= count ? (resolve(), true) : false);
    if (!check()) waiters.push(check);
  });
}
function push(event) {
  received.push(event);
  for (const w of [...waiters]) if (w()) waiters.splice(waiters.indexOf(w), 1);
}

async function refused(path) {
  const channel = await events.connect(path, auth);
  return new Promise((resolve) => {
    const s = channel.subscribe({ next: () => resolve('unexpected data'), error: (e) => resolve(message(e)) });
    s.ready.catch((e) => resolve(message(e)));
  });
}

try {
  const room = await events.connect('/chat/room', auth);
  await room.subscribe({ next: (data) => push(data.event), error: fail }).ready;
  const direct = await events.connect('/direct/x', auth);
  await direct.subscribe({ next: (data) => push(data.event), error: fail }).ready;

  await room.publish({ text: 'hello' }); // over the WebSocket: transformed
  await arrived(1);
  // Over HTTP, three events: one dropped by onPublish, two transformed.
  const publishHttp = await events.post('/chat/room', [{ text: 'drop me', drop: true }, { text: 'kept' }, { text: 'also' }], auth);
  await arrived(3);
  let publishError = null;
  try {
    await room.publish({ text: 'forbidden', forbid: true }); // util.error: the whole publish fails
  } catch (err) {
    publishError = message(err);
  }
  let postError = null;
  try {
    await events.post('/chat/room', { text: 'forbidden', forbid: true }, auth);
  } catch (err) {
    postError = message(err);
  }
  await direct.publish({ n: 1 }); // a Node.js Lambda onPublish (direct integration)
  await arrived(4);
  const unauthorized = await refused('/chat/private');
  const banned = await refused('/chat/banned');
  console.log(JSON.stringify({ received, publishHttp: publishHttp ?? null, publishError, postError, unauthorized, banned }));
  events.closeAll();
  process.exit(0);
} catch (err) {
  fail(err);
}
