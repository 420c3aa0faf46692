// Module resolve hooks of sockway's Node.js workers (registered by bootstrap.mjs with
// module.register; they run on Node's loader thread).
//
// - '@aws-appsync/utils' resolves to sockway's implementation (appsync_utils.mjs): the npm
//   package only holds types, AppSync supplies the functions at run time.
// - A bare specifier that the handler's own node_modules does not have is looked up in the
//   AWS SDK directory sockway installed (ES modules ignore NODE_PATH), as Lambda's runtimes
//   resolve the SDK they ship. The handler's own copy always wins.
// - APPSYNC_JS code (data.appsyncCode): loaded as an ES module whatever its extension; it may
//   import '@aws-appsync/utils' and nothing else (AppSync requires one bundled file, and has
//   no Node.js modules: no network, no files).

let sdkParent = null;
let utilsUrl = null;
let appsyncCode = null;
let retryRoot = null;

export async function initialize(data) {
  sdkParent = data?.sdkParent ?? null;
  utilsUrl = data?.utilsUrl ?? null;
  appsyncCode = data?.appsyncCode ?? null;
  retryRoot = data?.retryRoot ?? null;
}

function fresh(result) {
  // A handler whose first import failed (bootstrap.mjs importFile): its own files get new
  // URLs, so the failed module records cached under the old ones are not reused.
  if (retryRoot !== null && result.url.startsWith(retryRoot) && !result.url.includes('?')) {
    return { ...result, url: `${result.url}?sockway-sdk` };
  }
  return result;
}

function isBare(specifier) {
  return !specifier.startsWith('.') && !specifier.startsWith('/') && !specifier.includes(':');
}

export async function resolve(specifier, context, nextResolve) {
  if (specifier === '@aws-appsync/utils' && utilsUrl) {
    return { url: utilsUrl, format: 'module', shortCircuit: true };
  }
  if (appsyncCode !== null && context.parentURL === appsyncCode) {
    throw new Error(
      `APPSYNC_JS code may import only '@aws-appsync/utils' (bundle your own code into the ` +
      `handler file); it imports '${specifier}'`,
    );
  }
  try {
    return fresh(await nextResolve(specifier, context));
  } catch (err) {
    if (err?.code !== 'ERR_MODULE_NOT_FOUND' || !isBare(specifier) || sdkParent === null) throw err;
    try {
      return await nextResolve(specifier, { ...context, parentURL: sdkParent });
    } catch {
      throw err; // report the handler's own resolution failure, not the fallback's
    }
  }
}

export async function load(url, context, nextLoad) {
  if (appsyncCode !== null && url === appsyncCode) {
    return nextLoad(url, { ...context, format: 'module' });
  }
  return nextLoad(url, context);
}
