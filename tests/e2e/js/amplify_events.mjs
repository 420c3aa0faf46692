// Drives the real AWS Amplify JS `events` client against sockway (run by test_appsync_amplify.py).
// Usage: node amplify_events.mjs '<json options>' where the options are
//   {endpoint, channel, authMode, apiKey?, authToken?, accessToken?, accessKeyId?, secretAccessKey?}
// Prints one JSON line: {"received": [...], "publishHttp": ..., "badError": "...",
//   "postRefused": "<name>: <message>", "postDenied": "<name>: <message>"}.
import WebSocket from 'ws';
import { Amplify } from 'aws-amplify';
import { events } from 'aws-amplify/data';
import { decodeJWT } from '@aws-amplify/core';

// Node 20 has no global WebSocket; Amplify uses the browser API, which `ws` implements.
globalThis.WebSocket = WebSocket;

const opts = JSON.parse(process.argv[2]);
Amplify.configure(
  {
    API: {
      Events: {
        endpoint: opts.endpoint,
        region: 'us-east-1',
        defaultAuthMode: opts.authMode,
        apiKey: opts.apiKey,
      },
    },
  },
  {
    // What a signed-in app gets from Amplify Auth: a Cognito access token, AWS credentials.
    Auth: {
      tokenProvider: {
        getTokens: async () => (opts.accessToken ? { accessToken: decodeJWT(opts.accessToken) } : null),
      },
      credentialsProvider: {
        getCredentialsAndIdentityId: async () =>
          opts.accessKeyId
            ? { credentials: { accessKeyId: opts.accessKeyId, secretAccessKey: opts.secretAccessKey } }
            : undefined,
        clearCredentialsAndIdentityId: () => {},
      },
    },
  },
);

const fail = (err) => {
  console.error('FAILED', err && (err.stack || JSON.stringify(err)));
  process.exit(1);
};
setTimeout(() => fail(new Error('timed out')), 30000).unref();

const received = [];
let resolveDone;
const done = new Promise((resolve) => (resolveDone = resolve));
const authOptions = opts.authToken ? { authToken: opts.authToken } : {};

try {
  const channel = await events.connect(opts.channel, authOptions);
  const sub = channel.subscribe({
    next: (data) => {
      received.push(data.event);
      if (received.length === 2) resolveDone();
    },
    error: fail,
  });
  await sub.ready;
  await channel.publish({ via: 'websocket', n: 1, text: '<b> & é' });
  const publishHttp = await events.post(opts.channel, { via: 'http', n: 2 }, authOptions);
  await done;
  // Refused HTTP publishes: what Amplify's error says (name and message).
  const postError = async (channelName, options) => {
    try {
      await events.post(channelName, { via: 'refused' }, options);
      return 'unexpected success';
    } catch (e) {
      return `${e?.name}: ${e?.message}`;
    }
  };
  const postRefused = await postError('/nowhere/x', authOptions);
  const postDenied = await postError(opts.channel, { authMode: 'apiKey', apiKey: 'da2-wrong' });
  // A refused subscription (unknown namespace) reaches the error callback.
  const bad = await events.connect('/nowhere/x', authOptions);
  const badError = await new Promise((resolve) => {
    const s = bad.subscribe({ next: () => resolve('unexpected data'), error: (e) => resolve(String(e?.errors?.[0]?.message ?? e?.message ?? JSON.stringify(e))) });
    s.ready.catch((e) => resolve(String(e && e.message)));
  });
  console.log(
    JSON.stringify({ received, publishHttp: publishHttp ?? null, badError, postRefused, postDenied }),
  );
  channel.close();
  bad.close();
  events.closeAll();
  process.exit(0);
} catch (err) {
  fail(err);
}
