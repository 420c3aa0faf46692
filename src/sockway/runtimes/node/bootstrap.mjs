// sockway's Node.js worker: one function, one invocation at a time, as a Lambda execution
// environment of the nodejs18.x/20.x/22.x runtimes runs it (runtimes/nodejs.py starts it).
//
//   node bootstrap.mjs REPLY_FD CODE_DIR HANDLER MODE SDK_NODE_MODULES
//
// Protocol (the process runtime's, runtimes/worker_main.py): every message is a 4-byte
// big-endian length and that many bytes of JSON. Requests {requestId, event, timeoutMs, arn,
// reportMemory} arrive on fd 0 and are read synchronously between invocations, so the
// handler's leftover timers wait for the next invocation as in a frozen Lambda environment.
// Answers go to REPLY_FD: {type: "ready"} | {type: "init_error", ...} once, then per
// invocation {type: "result", payload} or {type: "error", errorType, errorMessage,
// stackTrace}, with maxRssKb when reportMemory asked for it. fd 1 and fd 2 carry the
// handler's output, written synchronously (pipes on Linux) and so before the answer: when
// the answer comes, the gateway has the invocation's output (runtimes/worker.py).
//
// MODE "lambda": HANDLER is Lambda's "[dir/]file.export[.nested]", loaded as Lambda's Node.js
// runtime does (file.js — CommonJS, or an ES module under "type": "module" —, file.mjs,
// file.cjs, else a package of that name). Async handlers answer with their promise; others
// with callback(err, result) / context.done|succeed|fail, after the event loop has emptied
// unless context.callbackWaitsForEmptyEventLoop is false; a handler that neither returns a
// promise nor calls back answers null when the loop empties.
//
// MODE "appsync:onPublish" / "appsync:onSubscribe": HANDLER is an APPSYNC_JS file; see
// appsync.mjs for how its functions become the direct-Lambda answer of the events door.

import fs from 'node:fs';
import path from 'node:path';
import { createRequire } from 'node:module';
import * as nodeModule from 'node:module';
import { format } from 'node:util';
import { pathToFileURL } from 'node:url';

const [replyFdArg, codeDir, handlerRef, mode, sdkModules] = process.argv.slice(2);
const REPLY_FD = Number(replyFdArg);
const TASK_ROOT = codeDir || process.cwd();
const FUNCTION_NAME = process.env.AWS_LAMBDA_FUNCTION_NAME ?? '';
const MEMORY = process.env.AWS_LAMBDA_FUNCTION_MEMORY_SIZE ?? '128';
const sleeper = new Int32Array(new SharedArrayBuffer(4));

// -- protocol ----------------------------------------------------------------------------

function writeAll(fd, buffer) {
  let offset = 0;
  while (offset < buffer.length) {
    try {
      offset += fs.writeSync(fd, buffer, offset);
    } catch (err) {
      if (err.code !== 'EAGAIN') throw err;
      Atomics.wait(sleeper, 0, 0, 1); // a non-blocking pipe is full: let the gateway read
    }
  }
}

function frame(json) {
  const body = Buffer.from(json, 'utf8');
  const head = Buffer.allocUnsafe(4);
  head.writeUInt32BE(body.length, 0);
  return Buffer.concat([head, body]);
}

function send(message) {
  writeAll(REPLY_FD, frame(JSON.stringify(message)));
}

function readExactly(size) {
  const buffer = Buffer.allocUnsafe(size);
  let offset = 0;
  while (offset < size) {
    let got;
    try {
      got = fs.readSync(0, buffer, offset, size - offset, null);
    } catch (err) {
      if (err.code === 'EAGAIN') {
        Atomics.wait(sleeper, 0, 0, 1);
        continue;
      }
      if (err.code === 'EOF') return null;
      throw err;
    }
    if (got === 0) return null; // the gateway closed our stdin: exit quietly
    offset += got;
  }
  return buffer;
}

function readRequest() {
  const head = readExactly(4);
  if (head === null) return null;
  const body = readExactly(head.readUInt32BE(0));
  return body === null ? null : JSON.parse(body.toString('utf8'));
}

let statusFd = -1;
function peakRssKb() {
  // VmHWM, not resourceUsage().maxRSS: Linux keeps ru_maxrss across execve (the gateway's).
  try {
    if (statusFd < 0) statusFd = fs.openSync('/proc/self/status', 'r');
    const buffer = Buffer.alloc(4096);
    const text = buffer.toString('latin1', 0, fs.readSync(statusFd, buffer, 0, 4096, 0));
    const match = /VmHWM:\s+(\d+)/.exec(text);
    return match ? Number(match[1]) : 0;
  } catch {
    return 0;
  }
}

// -- logs: console as Lambda's Node.js runtime writes it ---------------------------------

let currentRequestId; // undefined during init, as on Lambda

// AWS_LAMBDA_LOG_FORMAT=JSON (a function's LoggingConfig): one JSON object per call, and
// AWS_LAMBDA_LOG_LEVEL drops the lower levels, as Lambda's Node.js runtime does in that mode.
const JSON_LOGS = (process.env.AWS_LAMBDA_LOG_FORMAT ?? '').toUpperCase() === 'JSON';
const LEVELS = ['TRACE', 'DEBUG', 'INFO', 'WARN', 'ERROR', 'FATAL'];
const minLevel = JSON_LOGS
  ? Math.max(0, LEVELS.indexOf((process.env.AWS_LAMBDA_LOG_LEVEL ?? 'TRACE').toUpperCase()))
  : 0;

function writeLog(level, message, error) {
  const time = new Date().toISOString();
  let line;
  if (JSON_LOGS) {
    const record = { timestamp: time, level, requestId: currentRequestId, message };
    if (error !== undefined) {
      Object.assign(record, {
        errorType: error.name, errorMessage: error.message, stackTrace: String(error.stack).split('\n'),
      });
    }
    line = JSON.stringify(record) + '\n';
  } else {
    line = `${time}\t${currentRequestId}\t${level}\t${message}\n`;
  }
  writeAll(2, Buffer.from(line, 'utf8'));
}

function logAt(level, args) {
  if (LEVELS.indexOf(level) < minLevel) return;
  const error = args.length === 1 && isError(args[0]) ? args[0] : undefined;
  writeLog(level, format(...args), error);
}

for (const [name, level] of [
  ['log', 'INFO'],
  ['info', 'INFO'],
  ['warn', 'WARN'],
  ['error', 'ERROR'],
  ['debug', 'DEBUG'],
]) {
  console[name] = (...args) => logAt(level, args);
}
console.fatal = (...args) => logAt('FATAL', args);
console.trace = (...args) => {
  if (LEVELS.indexOf('TRACE') < minLevel) return;
  const err = new Error(format(...args));
  writeLog('TRACE', `Trace: ${err.message}\n${err.stack.split('\n').slice(2).join('\n')}`);
};

// The handler's stdin is empty, as on Lambda: fd 0 carries sockway's requests, read above.
let emptyStdin;
Object.defineProperty(process, 'stdin', {
  configurable: true,
  enumerable: true,
  get() {
    emptyStdin ??= fs.createReadStream('/dev/null');
    return emptyStdin;
  },
});

// -- errors as Lambda reports them -------------------------------------------------------

function isError(value) {
  return value instanceof Error || (value !== null && typeof value === 'object' &&
    typeof value.message === 'string' && typeof value.stack === 'string');
}

export function errorShape(value, type) {
  try {
    if (isError(value)) {
      return {
        errorType: type ?? value.name ?? 'Error',
        errorMessage: value.message ?? '',
        trace: String(value.stack ?? '').split('\n'),
      };
    }
    return { errorType: type ?? typeof value, errorMessage: String(value), trace: [] };
  } catch {
    return { errorType: 'handled', errorMessage: 'the error could not be read', trace: [] };
  }
}

function errorReply(value, type) {
  const shape = errorShape(value, type);
  const logged = { errorType: shape.errorType, errorMessage: shape.errorMessage, stack: shape.trace };
  if (!(mode.startsWith('appsync') && shape.errorType === 'UnauthorizedException')) {
    writeLog('ERROR', `Invoke Error \t${JSON.stringify(logged)}`);
  }
  return {
    type: 'error',
    errorType: shape.errorType,
    errorMessage: shape.errorMessage,
    stackTrace: shape.trace.map((line) => line + '\n'),
  };
}

class InitError extends Error {
  constructor(type, message, cause) {
    super(message);
    this.errorType = type;
    this.cause = cause;
  }
}

// -- loading the handler -----------------------------------------------------------------

let hooksRegistered = false;
export function registerHooks(extra = {}) {
  // ES modules ignore NODE_PATH: a resolve hook gives them the installed AWS SDK and the
  // bundled @aws-appsync/utils (hooks.mjs). CommonJS uses NODE_PATH (set by the gateway).
  if (hooksRegistered || typeof nodeModule.register !== 'function') return;
  hooksRegistered = true;
  nodeModule.register('./hooks.mjs', import.meta.url, {
    data: {
      sdkParent: sdkModules ? pathToFileURL(path.join(sdkModules, '..', 'sockway.mjs')).href : null,
      utilsUrl: new URL('./appsync_utils.mjs', import.meta.url).href,
      ...extra,
    },
  });
}

function isModulePackage(file) {
  // The nearest package.json decides, as for Node itself.
  let dir = path.dirname(file);
  for (;;) {
    const candidate = path.join(dir, 'package.json');
    if (fs.existsSync(candidate)) {
      try {
        return JSON.parse(fs.readFileSync(candidate, 'utf8')).type === 'module';
      } catch {
        return false;
      }
    }
    const parent = path.dirname(dir);
    if (parent === dir) return false;
    dir = parent;
  }
}

function inSdk(err) {
  // Node's words for a bare specifier nothing resolves: "Cannot find package 'x' imported ...".
  const name = err?.code === 'ERR_MODULE_NOT_FOUND' && /Cannot find package '([^']+)'/.exec(err.message)?.[1];
  return Boolean(name && sdkModules && fs.existsSync(path.join(sdkModules, name, 'package.json')));
}

async function importFile(file) {
  // The resolve hooks cost ~100 ms of cold start (Node 20 runs them on a thread of their
  // own, measured 87-137 ms): register them only for a handler that imports an installed SDK
  // package. Linking failed before anything was evaluated, so the retry runs the code once;
  // the hook gives the handler's files fresh URLs (the failed ones stay cached).
  const url = pathToFileURL(file).href;
  if (hooksRegistered) return import(url);
  try {
    return await import(url);
  } catch (err) {
    if (!inSdk(err)) throw err;
    registerHooks({ retryRoot: pathToFileURL(TASK_ROOT + path.sep).href });
    return import(`${url}?sockway-sdk`);
  }
}

const requireFromRoot = createRequire(path.join(TASK_ROOT, 'index.js'));

async function loadModule(base, moduleName) {
  if (fs.existsSync(base + '.js')) {
    return isModulePackage(base + '.js') ? importFile(base + '.js') : requireFromRoot(base + '.js');
  }
  if (fs.existsSync(base + '.mjs')) return importFile(base + '.mjs');
  if (fs.existsSync(base + '.cjs')) return requireFromRoot(base + '.cjs');
  return requireFromRoot(moduleName); // a package in node_modules (or on NODE_PATH)
}

async function loadLambdaHandler(ref) {
  const slash = ref.lastIndexOf('/');
  const moduleRoot = slash >= 0 ? ref.slice(0, slash) : '';
  const match = /^([^.]*)\.(.*)$/.exec(ref.slice(slash + 1));
  if (!match) throw new InitError('Runtime.MalformedHandlerName', `Bad handler ${ref}`);
  const [, moduleName, handlerPath] = match;
  let loaded;
  try {
    loaded = await loadModule(path.resolve(TASK_ROOT, moduleRoot, moduleName), moduleName);
  } catch (err) {
    if (err instanceof SyntaxError) {
      throw new InitError('Runtime.UserCodeSyntaxError', `${err.name}: ${err.message}`, err);
    }
    if (err?.code === 'MODULE_NOT_FOUND' || err?.code === 'ERR_MODULE_NOT_FOUND') {
      throw new InitError('Runtime.ImportModuleError', `Error: ${err.message}`, err);
    }
    throw err;
  }
  const handler = handlerPath.split('.').reduce((obj, key) => (obj == null ? undefined : obj[key]), loaded);
  if (typeof handler !== 'function') {
    throw new InitError(
      'Runtime.HandlerNotFound', `${moduleName}.${handlerPath} is undefined or not exported`,
    );
  }
  return handler;
}

// -- invocations -------------------------------------------------------------------------

let handler;
let active = null; // the running invocation: {done, reply (waiting for the loop), finish}

let reportMemory = true; // the running invocation's request asked for maxRssKb (REPORT)

function answer(reply, exiting = false) {
  if (reportMemory) reply.maxRssKb = peakRssKb();
  if (exiting) reply.exiting = true;
  let json;
  try {
    json = JSON.stringify(reply);
  } catch (err) {
    json = JSON.stringify({ ...errorReply(err, 'Runtime.MarshalError'), maxRssKb: reply.maxRssKb });
  }
  writeAll(REPLY_FD, frame(json));
}

function next() {
  const request = readRequest();
  if (request === null) process.exit(0);
  invoke(request);
}

function invoke(request) {
  const invocation = { done: false, reply: null, called: false };
  active = invocation;
  currentRequestId = request.requestId;
  reportMemory = request.reportMemory ?? true;
  const deadline = Date.now() + request.timeoutMs;
  invocation.finish = (reply) => {
    if (invocation.done) return;
    invocation.done = true;
    answer(reply);
    setImmediate(next);
  };
  const context = {
    callbackWaitsForEmptyEventLoop: true,
    functionName: FUNCTION_NAME,
    functionVersion: process.env.AWS_LAMBDA_FUNCTION_VERSION ?? '$LATEST',
    invokedFunctionArn: request.arn,
    memoryLimitInMB: MEMORY,
    awsRequestId: request.requestId,
    logGroupName: process.env.AWS_LAMBDA_LOG_GROUP_NAME,
    logStreamName: process.env.AWS_LAMBDA_LOG_STREAM_NAME,
    identity: undefined,
    clientContext: undefined,
    getRemainingTimeInMillis: () => Math.max(0, deadline - Date.now()),
  };
  const callback = (err, result) => {
    if (invocation.done || invocation.called) return;
    invocation.called = true;
    const reply = err !== undefined && err !== null
      ? errorReply(err)
      : { type: 'result', payload: result };
    if (context.callbackWaitsForEmptyEventLoop) invocation.reply = reply; // sent at beforeExit
    else invocation.finish(reply);
  };
  context.done = (err, result) => callback(err, result);
  context.succeed = (result) => callback(null, result);
  context.fail = (err) => callback(err ?? 'handled');
  try {
    const out = handler(request.event, context, callback);
    if (out !== null && typeof out === 'object' && typeof out.then === 'function') {
      out.then(
        (value) => invocation.finish({ type: 'result', payload: value }),
        (err) => invocation.finish(errorReply(err)),
      );
    }
  } catch (err) {
    invocation.finish(errorReply(err));
  }
}

process.on('beforeExit', () => {
  // The event loop is empty: a callback's answer is due, or (no callback, no promise) null.
  if (active !== null && !active.done) {
    active.finish(active.reply ?? { type: 'result', payload: null });
  }
});

function fatal(err, type, status) {
  // Lambda's Node.js runtime logs the error, fails the running invocation with it (a
  // rejection as Runtime.UnhandledPromiseRejection "Name: message"), then the process exits.
  writeLog('ERROR', `${type ?? 'Uncaught Exception'} \t${JSON.stringify(errorShape(err))}`);
  if (active !== null && !active.done) {
    active.done = true;
    const shape = errorShape(err);
    const message = type && isError(err) ? `${err.name}: ${err.message}` : shape.errorMessage;
    answer({
      type: 'error',
      errorType: type ?? shape.errorType,
      errorMessage: message,
      stackTrace: shape.trace.map((line) => line + '\n'),
    }, true);
  }
  process.exit(status);
}

process.on('uncaughtException', (err) => fatal(err, null, 129));
process.on('unhandledRejection', (reason) => fatal(reason, 'Runtime.UnhandledPromiseRejection', 128));

// -- AWS host names the handler builds itself ---------------------------------------------

// AWS's chat sample posts to https://{apiId}.execute-api.{region}.amazonaws.com/{stage}. With
// SOCKWAY_AWS_HOSTS=host:port (set by sockway for template projects, runtimes/aws_hosts.py in
// Python workers), connections to *.execute-api / *.appsync-api / *.appsync-realtime-api
// .{region}.amazonaws.com go to the gateway, whatever port was asked; TLS still verifies the
// name asked for (the development certificate carries those names). Every socket Node opens
// (http, https, the AWS SDK, ws) connects through net.Socket.prototype.connect.
const AWS_HOST = /^[a-z0-9]+\.(?:execute-api|appsync-api|appsync-realtime-api)\.[a-z0-9-]+\.amazonaws\.com\.?$/i;

async function redirectAwsHosts() {
  const target = process.env.SOCKWAY_AWS_HOSTS;
  if (!target) return;
  const at = target.lastIndexOf(':');
  const host = target.slice(0, at).replace(/^\[|\]$/g, '');
  const port = Number(target.slice(at + 1));
  const net = await import('node:net');
  const connect = net.Socket.prototype.connect;
  const aimed = (options) => options !== null && typeof options === 'object' &&
    typeof options.host === 'string' && AWS_HOST.test(options.host);
  net.Socket.prototype.connect = function (...args) {
    const first = args[0];
    if (Array.isArray(first)) {
      // net.createConnection's normalized [options, callback] (marked by a private symbol,
      // so changed in place).
      if (aimed(first[0])) first[0] = { ...first[0], host, port };
    } else if (aimed(first)) {
      args[0] = { ...first, host, port };
    } else if ((typeof first === 'number' || typeof first === 'string') && typeof args[1] === 'string' && AWS_HOST.test(args[1])) {
      args[0] = port;
      args[1] = host;
    }
    return connect.apply(this, args);
  };
}

// -- init --------------------------------------------------------------------------------

async function init() {
  await redirectAwsHosts(); // before the handler's module creates its clients
  try {
    if (mode.startsWith('appsync:')) {
      const { loadAppsyncHandler } = await import('./appsync.mjs');
      handler = await loadAppsyncHandler(path.resolve(TASK_ROOT, handlerRef), mode.slice(8), registerHooks);
    } else {
      handler = await loadLambdaHandler(handlerRef);
    }
  } catch (err) {
    const type = typeof err?.errorType === 'string' ? err.errorType : undefined;
    const shape = errorShape(err instanceof InitError && err.cause ? err.cause : err, type);
    if (err instanceof InitError) shape.errorMessage = err.message;
    send({
      type: 'init_error',
      errorType: shape.errorType,
      errorMessage: shape.errorMessage,
      stackTrace: shape.trace.map((line) => line + '\n'),
    });
    process.exit(1);
  }
  send({ type: 'ready' });
  setImmediate(next);
}

init();
