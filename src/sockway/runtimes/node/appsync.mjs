// AppSync Events code handlers (APPSYNC_JS) in sockway's Node.js workers.
//
// One file per namespace exports onPublish(ctx) and/or onSubscribe(ctx) (spec §6.2). The
// worker of one operation loads the file and answers each invocation with what the events
// front door reads from a direct Lambda handler (spec §6.3):
//
// - onPublish: its OutgoingEvent[] becomes {events}; null or [] broadcasts nothing; without
//   an onPublish export the events pass unchanged. util.error(msg) fails the whole publish
//   ({error: msg}: HTTP 403 / publish_error with the message).
// - onSubscribe: any return value allows; util.error(msg) rejects with the message;
//   util.unauthorized() rejects as Unauthorized (an UnauthorizedException function error).
//
// What APPSYNC_JS forbids and sockway refuses too: imports other than '@aws-appsync/utils'
// (hooks.mjs: no node:net, node:fs, ...), the fetch / WebSocket globals, and asynchronous
// handlers (a returned Promise fails the invocation). Not enforced: the language subset
// (APPSYNC_JS has no classes, try/catch, etc.) and resource limits beyond the function's
// timeout and memory; it is not a security sandbox (the process object stays reachable).

import fs from 'node:fs';
import { pathToFileURL } from 'node:url';
import { KIND, runWith } from './appsync_utils.mjs';

const OPERATIONS = new Set(['onPublish', 'onSubscribe']);

export async function loadAppsyncHandler(file, operation, registerHooks) {
  if (!OPERATIONS.has(operation)) throw new Error(`unknown APPSYNC_JS operation ${operation}`);
  const url = pathToFileURL(fs.realpathSync(file)).href;
  registerHooks({ appsyncCode: url });
  for (const name of ['fetch', 'WebSocket', 'EventSource', 'XMLHttpRequest']) {
    delete globalThis[name];
  }
  const mod = await import(url);
  const fn = mod[operation];
  if (fn !== undefined && typeof fn !== 'function') {
    const err = new Error(
      `${operation} is exported as an object: handlers with a data source (request/response) ` +
      'are not supported by sockway; use a Lambda handler (on_publish / on_subscribe) instead',
    );
    err.errorType = 'Runtime.HandlerNotFound';
    throw err;
  }
  return operation === 'onPublish' ? publisher(fn) : subscriber(fn);
}

function context(event) {
  return {
    identity: event.identity ?? null,
    request: event.request ?? { headers: {}, domainName: null },
    info: event.info,
    channel: event.info?.channel?.path,
    events: event.events ?? undefined,
    stash: event.stash ?? {},
    error: null,
    outErrors: [],
  };
}

function synchronous(result, operation) {
  if (result !== null && typeof result === 'object' && typeof result.then === 'function') {
    result.then(() => {}, () => {});
    const err = new TypeError(
      `${operation} returned a Promise: APPSYNC_JS handlers are synchronous (no async/await)`,
    );
    throw err;
  }
  return result;
}

function unauthorizedError() {
  const err = new Error('Unauthorized');
  err.name = 'UnauthorizedException';
  return err;
}

function publisher(fn) {
  return async (event) => {
    const ctx = context(event);
    if (fn === undefined) return { events: ctx.events ?? [] };
    try {
      const out = runWith(ctx, () => synchronous(fn(ctx), 'onPublish'));
      return { events: out ?? [] };
    } catch (err) {
      if (err?.[KIND] === 'error') return { error: err.message };
      if (err?.[KIND] === 'unauthorized') throw unauthorizedError();
      throw err;
    }
  };
}

function subscriber(fn) {
  return async (event) => {
    if (fn === undefined) return null;
    const ctx = context(event);
    try {
      runWith(ctx, () => synchronous(fn(ctx), 'onSubscribe'));
      return null;
    } catch (err) {
      if (err?.[KIND] === 'error') return { error: err.message };
      if (err?.[KIND] === 'unauthorized') throw unauthorizedError();
      throw err;
    }
  };
}
