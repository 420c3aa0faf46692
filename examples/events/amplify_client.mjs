// The example with the AWS Amplify JS `events` client, exactly as a web app would use it.
//   NODE_EXTRA_CA_CERTS=examples/events/.sockway/tls/ca.pem node examples/events/amplify_client.mjs \
//       https://localhost:8080/event da2-sockwaylocaldevelopmentkey
// Prints the events received as one JSON line.
import WebSocket from 'ws';
import { Amplify } from 'aws-amplify';
import { events } from 'aws-amplify/data';

globalThis.WebSocket = WebSocket; // Node 20 has no browser WebSocket; Amplify needs one

const [endpoint, apiKey] = process.argv.slice(2);
Amplify.configure({
  API: { Events: { endpoint, region: 'us-east-1', defaultAuthMode: 'apiKey', apiKey } },
});

setTimeout(() => { console.error('timed out'); process.exit(1); }, 20000).unref();

const received = [];
const channel = await events.connect('/chat/amplify');
const twoEvents = new Promise((resolve) => {
  const sub = channel.subscribe({
    next: (data) => { received.push(data.event); if (received.length === 2) resolve(); },
    error: (err) => { console.error(err); process.exit(1); },
  });
  sub.ready.then(async () => {
    await channel.publish({ text: 'hello from   Amplify' });
    await events.post('/chat/amplify', { text: 'darn, HTTP works too' });
  });
});
await twoEvents;
console.log(JSON.stringify({ received }));
channel.close();
process.exit(0);
