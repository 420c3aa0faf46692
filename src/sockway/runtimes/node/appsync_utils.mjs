// sockway's '@aws-appsync/utils' for APPSYNC_JS code handlers (the npm package of that name
// only declares types; AppSync provides the functions). Implemented: the helpers AppSync
// Events handlers use — util.error / unauthorized / appendError, util.log, ids, encodings,
// type checks, util.time, util.str, util.math, util.authType, runtime.earlyReturn. The
// data-source helpers (util.dynamodb, util.rds, util.http, util.transform) are not: sockway
// has no data-source handlers.

import { randomBytes, randomUUID } from 'node:crypto';
import { format } from 'node:util';

export const KIND = Symbol.for('sockway.appsync.kind');

let current = null; // the ctx of the running handler (util.authType, util.appendError)

export function runWith(ctx, body) {
  current = ctx;
  try {
    return body();
  } finally {
    current = null;
  }
}

function tagged(kind, message, extra = {}) {
  const err = new Error(message);
  err[KIND] = kind;
  Object.assign(err, extra);
  return err;
}

const CROCKFORD = '0123456789ABCDEFGHJKMNPQRSTVWXYZ';
const BASE62 = '0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz';

function ulid() {
  let time = Date.now();
  let head = '';
  for (let i = 0; i < 10; i++) {
    head = CROCKFORD[time % 32] + head;
    time = Math.floor(time / 32);
  }
  const random = randomBytes(16);
  let tail = '';
  for (let i = 0; i < 16; i++) tail += CROCKFORD[random[i] % 32];
  return head + tail;
}

function ksuid() {
  // 4 bytes of seconds since the KSUID epoch (2014-05-13T16:53:20Z) + 16 random bytes, base62.
  const bytes = Buffer.concat([Buffer.alloc(4), randomBytes(16)]);
  bytes.writeUInt32BE(Math.floor(Date.now() / 1000) - 1400000000, 0);
  let value = BigInt('0x' + bytes.toString('hex'));
  let out = '';
  while (value > 0n) {
    out = BASE62[Number(value % 62n)] + out;
    value /= 62n;
  }
  return out.padStart(27, '0');
}

function typeOf(value) {
  if (value === null || value === undefined) return 'Null';
  if (Array.isArray(value)) return 'List';
  switch (typeof value) {
    case 'string': return 'String';
    case 'number': return 'Number';
    case 'boolean': return 'Boolean';
    default: return 'Map';
  }
}

const isNull = (value) => value === null || value === undefined;
const isNullOrEmpty = (value) => isNull(value) || value === '';
const isNullOrBlank = (value) => isNull(value) || (typeof value === 'string' && value.trim() === '');

function log(level) {
  return (...args) => console[level](format(...args));
}

export const util = {
  error(message, errorType, data, errorInfo) {
    throw tagged('error', String(message), { errorType, data, errorInfo });
  },
  unauthorized() {
    throw tagged('unauthorized', 'Unauthorized');
  },
  appendError(message, errorType, data, errorInfo) {
    current?.outErrors?.push({ message: String(message), errorType, data, errorInfo });
    console.error(`appendError: ${message}${errorType ? ` (${errorType})` : ''}`);
  },
  log: { debug: log('debug'), info: log('info'), warn: log('warn'), error: log('error') },
  autoId: () => randomUUID(),
  autoUlid: ulid,
  autoKsuid: ksuid,
  escapeJavaScript: (value) => JSON.stringify(String(value)).slice(1, -1),
  urlEncode: (value) => encodeURIComponent(value).replace(/%20/g, '+'),
  urlDecode: (value) => decodeURIComponent(String(value).replace(/\+/g, '%20')),
  base64Encode: (value) => Buffer.from(String(value), 'utf8').toString('base64'),
  base64Decode: (value) => Buffer.from(String(value), 'base64').toString('utf8'),
  matches: (pattern, value) => new RegExp(`^(?:${pattern})$`).test(String(value)),
  isNull,
  isNullOrEmpty,
  isNullOrBlank,
  defaultIfNull: (value, fallback) => (isNull(value) ? fallback : value),
  defaultIfNullOrEmpty: (value, fallback) => (isNullOrEmpty(value) ? fallback : value),
  defaultIfNullOrBlank: (value, fallback) => (isNullOrBlank(value) ? fallback : value),
  isString: (value) => typeof value === 'string',
  isNumber: (value) => typeof value === 'number',
  isBoolean: (value) => typeof value === 'boolean',
  isList: (value) => Array.isArray(value),
  isMap: (value) => typeOf(value) === 'Map',
  typeOf,
  authType() {
    const identity = current?.identity;
    if (identity === null || identity === undefined) return 'API Key Authorization';
    if ('handlerContext' in identity || 'resolverContext' in identity) return 'Lambda Authorization';
    if ('accountId' in identity || 'userArn' in identity) return 'IAM Authorization';
    if (String(identity.issuer ?? '').includes('cognito-idp')) return 'User Pool Authorization';
    return 'Open ID Connect Authorization';
  },
  time: {
    nowISO8601: () => new Date().toISOString(),
    nowEpochSeconds: () => Math.floor(Date.now() / 1000),
    nowEpochMilliSeconds: () => Date.now(),
    parseISO8601ToEpochMilliSeconds: (value) => Date.parse(value),
    epochMilliSecondsToSeconds: (ms) => Math.floor(ms / 1000),
    epochMilliSecondsToISO8601: (ms) => new Date(ms).toISOString(),
  },
  str: {
    toUpper: (value) => String(value).toUpperCase(),
    toLower: (value) => String(value).toLowerCase(),
    toReplace: (value, find, replacement) => String(value).split(find).join(replacement),
    normalize: (value, form) => String(value).normalize(String(form ?? 'NFC').toUpperCase()),
  },
  math: {
    roundNum: (value) => Math.round(value),
    minVal: (a, b) => Math.min(a, b),
    maxVal: (a, b) => Math.max(a, b),
    randomDouble: () => Math.random(),
    randomWithinRange: (low, high) => Math.floor(Math.random() * (high - low + 1)) + low,
  },
};

export const runtime = {
  earlyReturn() {
    throw new Error('runtime.earlyReturn applies to handlers with a data source, which sockway does not run');
  },
};

export const extensions = {};

export default { util, runtime, extensions };
