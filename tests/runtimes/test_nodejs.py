"""The Node.js runtime with real ``node`` workers, without a gateway (runtimes/nodejs.py).

Lambda's Node.js handler contract: module formats, async and callback styles, ``context``,
errors as Lambda reports them, and the worker's lifecycle (warm reuse, exit, heap blow-up).
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import pytest

from sockway.runtimes.base import Invocation, InvocationError, InvocationTimeout
from sockway.runtimes.factory import FunctionSpec, check_handler_ref
from sockway.runtimes.inprocess import HandlerLoadError
from sockway.runtimes.node_sdk import NodejsSettings
from sockway.runtimes.nodejs import NodeIntegration, NodeRuntime
from sockway.runtimes.process import WorkerPools

pytestmark = pytest.mark.timeout(60)

CJS = """
const os = require('os');
let calls = 0;
console.log('init of cjs');
exports.handler = async (event, context) => {
  calls += 1;
  console.log('got', JSON.stringify(event));
  return {
    pid: process.pid, calls, event,
    name: context.functionName, memory: context.memoryLimitInMB,
    requestId: context.awsRequestId, arn: context.invokedFunctionArn,
    remaining: context.getRemainingTimeInMillis(),
    env: { exec: process.env.AWS_EXECUTION_ENV, region: process.env.AWS_REGION,
           only: process.env.ONLY_MINE ?? null },
    cwd: process.cwd(),
  };
};
exports.nested = { deeper: { handler: async () => 'nested' } };
exports.callback = (event, context, callback) => {
  setTimeout(() => { globalThis.later = 'ran'; }, 50);
  callback(null, { style: 'callback', later: globalThis.later ?? null });
};
exports.noWait = (event, context, callback) => {
  context.callbackWaitsForEmptyEventLoop = false;
  setTimeout(() => {}, 20000);
  callback(null, 'no wait');
};
exports.callbackError = (event, context, callback) => callback(new TypeError('bad input'));
exports.callbackString = (event, context, callback) => callback('plain failure');
exports.nothing = () => {};
exports.throws = async () => { const e = new RangeError('handler bug on purpose'); throw e; };
exports.sleepy = () => new Promise(() => setTimeout(() => {}, 30000));
exports.exits = () => process.exit(3);
exports.hog = async () => { const a = []; for (;;) a.push(new Array(1e6).fill(1.5)); };
exports.buffers = async () => { const a = []; for (;;) a.push(Buffer.alloc(64 * 1024 * 1024, 1)); };
exports.uncaught = async () => { setTimeout(() => { throw new Error('later boom'); }, 1); return new Promise(() => {}); };
exports.rejects = async () => { Promise.reject(new Error('nobody waits')); return new Promise(() => {}); };
exports.stdout = async () => { process.stdout.write('raw stdout line\\n'); process.stderr.write('raw stderr line\\n'); return 'ok'; };
exports.circular = async () => { const a = {}; a.self = a; return a; };
exports.jsonLogs = async () => {
  console.debug('too detailed');
  console.info('as json', 42);
  console.error(new TypeError('logged error'));
  return 'logged';
};
exports.stdin = async () => new Promise((resolve) => {
  let data = '';
  process.stdin.on('data', (c) => (data += c)).on('end', () => resolve('stdin:' + data));
});
"""

ESM = """
import { readFileSync } from 'node:fs';
const top = await Promise.resolve('top-level await');
export const handler = async (event) => ({ esm: true, top, event });
"""

FUNCS = {
    "cjs.js": CJS,
    "esm.mjs": ESM,
    "typed/package.json": '{"type": "module"}',
    "typed/app.js": "export const handler = async () => 'module package';",
    "old.cjs": "module.exports.handler = async () => 'cjs extension';",
    "deps/index.js": "const dep = require('left-pad-ish'); exports.handler = async () => dep('x');",
    "deps/node_modules/left-pad-ish/package.json": '{"name": "left-pad-ish", "main": "main.js"}',
    "deps/node_modules/left-pad-ish/main.js": "module.exports = (s) => '__' + s;",
    "broken.js": "exports.handler = async () => { return 1 +; };",
    "missing_dep.js": "require('not-installed-anywhere'); exports.handler = async () => 1;",
    "init_throws.js": "throw new Error('init went wrong');",
}

Build = Callable[..., NodeIntegration]


def write_code(directory: Path) -> Path:
    for name, source in FUNCS.items():
        path = directory / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(source)
    return directory


@pytest.fixture
async def build(tmp_path: Path) -> AsyncIterator[Build]:
    code = write_code(tmp_path / "code")
    pools = WorkerPools(reload=False)
    runtime = NodeRuntime(NodejsSettings(aws_sdk=[]), tmp_path / "state")
    runtime.used = True
    await runtime.prepare()

    def make(ref: str, **spec: object) -> NodeIntegration:
        function = FunctionSpec(
            ref=ref,
            function_name=ref.replace("/", "-").replace(".", "-"),
            code_dir=code,
            runtime="nodejs",
            **spec,  # type: ignore[arg-type]
        )
        integration = NodeIntegration(function, pools, runtime)
        pools.add(function, integration)
        return integration

    yield make
    await pools.aclose()


def call(timeout_s: float = 10, rid: str = "req-1") -> Invocation:
    return Invocation(rid, timeout_s)


async def test_async_handler_context_environment_and_warm_reuse(
    build: Build, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, "sockway.function")
    fn = build("cjs.handler", memory_mb=256, environment={"ONLY_MINE": "yes"})
    first = await fn.invoke({"n": 1}, call(rid="rid-1"))
    second = await fn.invoke({"n": 2}, call(rid="rid-2"))
    assert first["event"] == {"n": 1} and second["event"] == {"n": 2}
    assert first["pid"] == second["pid"] and second["calls"] == 2  # warm: same worker
    assert first["pid"] != os.getpid()
    assert first["name"] == "cjs-handler" and first["memory"] == "256"  # a string, as on Lambda
    assert first["requestId"] == "rid-1"
    assert first["arn"].endswith(":function:cjs-handler")
    assert 0 < first["remaining"] <= 10_000
    assert first["env"]["exec"].startswith("AWS_Lambda_nodejs")
    assert first["env"]["only"] == "yes"
    assert first["cwd"] == str(tmp_path / "code")
    text = caplog.text
    # console.log as Lambda writes it (time, request id, level), behind the function's name.
    assert "[cjs-handler] [rid-1] " in text and '\trid-1\tINFO\tgot {"n":1}' in text
    assert "\tundefined\tINFO\tinit of cjs" in text  # init phase: no request id, as on Lambda
    assert "START RequestId: rid-1" in text and "END RequestId: rid-1" in text
    reports = [r.getMessage() for r in caplog.records if "REPORT RequestId" in r.getMessage()]
    assert "Init Duration" in reports[0] and "Init Duration" not in reports[1]
    assert "Memory Size: 256 MB" in reports[0]
    # END comes after the handler's own last line.
    lines = [r.getMessage() for r in caplog.records]
    got = next(i for i, m in enumerate(lines) if 'got {"n":2}' in m)
    end = next(i for i, m in enumerate(lines) if "END RequestId: rid-2" in m)
    assert got < end


async def test_module_formats_and_node_modules(build: Build) -> None:
    assert (await build("esm.handler").invoke({"a": 1}, call())) == {
        "esm": True,
        "top": "top-level await",
        "event": {"a": 1},
    }
    assert await build("typed/app.handler").invoke({}, call()) == "module package"
    assert await build("old.handler").invoke({}, call()) == "cjs extension"
    assert await build("deps/index.handler").invoke({}, call()) == "__x"
    assert await build("cjs.nested.deeper.handler").invoke({}, call()) == "nested"


async def test_callback_styles(build: Build) -> None:
    # callbackWaitsForEmptyEventLoop (default true): the answer waits for the timer to run.
    fn = build("cjs.callback")
    assert await fn.invoke({}, call()) == {"style": "callback", "later": None}
    assert await fn.invoke({}, call()) == {"style": "callback", "later": "ran"}
    # false: answered at once although a 20 s timer is pending.
    assert await build("cjs.noWait").invoke({}, call(timeout_s=5)) == "no wait"
    # neither a promise nor a callback: null once the event loop is empty.
    assert await build("cjs.nothing").invoke({}, call()) is None
    with pytest.raises(InvocationError) as err:
        await build("cjs.callbackError").invoke({}, call())
    assert (err.value.error_type, err.value.error_message) == ("TypeError", "bad input")
    with pytest.raises(InvocationError) as err:
        await build("cjs.callbackString").invoke({}, call())
    assert (err.value.error_type, err.value.error_message) == ("string", "plain failure")


async def test_thrown_error_as_lambda_reports_it(
    build: Build, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, "sockway.function")
    fn = build("cjs.throws")
    with pytest.raises(InvocationError) as err:
        await fn.invoke({}, call(rid="rid-err"))
    assert err.value.error_type == "RangeError"
    assert err.value.error_message == "handler bug on purpose"
    assert err.value.stack.startswith("RangeError: handler bug on purpose\n    at ")
    logged = next(r.getMessage() for r in caplog.records if "Invoke Error" in r.getMessage())
    shape = json.loads(logged.split("Invoke Error \t", 1)[1])
    assert shape["errorType"] == "RangeError" and shape["stack"][0].startswith("RangeError")
    # The worker survives a thrown error and serves the next call.
    with pytest.raises(InvocationError):
        await fn.invoke({}, call())


async def test_init_errors(build: Build) -> None:
    cases = {
        "broken.handler": "Runtime.UserCodeSyntaxError",
        "missing_dep.handler": "Runtime.ImportModuleError",
        "nowhere.handler": "Runtime.ImportModuleError",
        "cjs.notExported": "Runtime.HandlerNotFound",
        "init_throws.handler": "Error",
        "nodot": "Runtime.MalformedHandlerName",
    }
    for ref, error_type in cases.items():
        with pytest.raises(InvocationError) as err:
            await build(ref).invoke({}, call())
        assert err.value.error_type == error_type, (ref, err.value)
    with pytest.raises(InvocationError) as err:
        await build("cjs.notExported").invoke({}, call())
    assert err.value.error_message == "cjs.notExported is undefined or not exported"


async def test_timeout_kills_the_worker_and_the_next_call_gets_a_fresh_one(build: Build) -> None:
    fn = build("cjs.handler")
    sleepy = build("cjs.sleepy")
    with pytest.raises(InvocationTimeout):
        await sleepy.invoke({}, call(timeout_s=0.5))
    with pytest.raises(InvocationTimeout):
        await sleepy.invoke({}, call(timeout_s=0.5))
    assert (await fn.invoke({}, call()))["calls"] == 1  # another function: untouched


async def test_exit_uncaught_and_unhandled_rejection(build: Build) -> None:
    with pytest.raises(InvocationError) as err:
        await build("cjs.exits").invoke({}, call(rid="rid-x"))
    assert err.value.error_type == "Runtime.ExitError"
    assert err.value.error_message == (
        "RequestId: rid-x Error: Runtime exited with error: exit status 3"
    )
    uncaught = build("cjs.uncaught")
    with pytest.raises(InvocationError) as err:
        await uncaught.invoke({}, call())
    assert (err.value.error_type, err.value.error_message) == ("Error", "later boom")
    with pytest.raises(InvocationError) as err:
        await build("cjs.rejects").invoke({}, call())
    assert err.value.error_type == "Runtime.UnhandledPromiseRejection"
    assert err.value.error_message == "Error: nobody waits"
    # The worker that crashed is not reused: the next call starts a fresh one and fails anew
    # (not with a broken pipe).
    with pytest.raises(InvocationError) as err:
        await uncaught.invoke({}, call())
    assert err.value.error_message == "later boom"


async def test_heap_blow_up_is_out_of_memory(build: Build) -> None:
    hog = build("cjs.hog", memory_mb=128)
    with pytest.raises(InvocationError) as err:
        await hog.invoke({}, call(timeout_s=30))
    assert err.value.error_type == "Runtime.OutOfMemory"
    # Buffers live outside V8's heap: the process limit stops them.
    with pytest.raises(InvocationError) as err:
        await build("cjs.buffers", memory_mb=128).invoke({}, call(timeout_s=30))
    assert err.value.error_type == "RangeError"
    assert "Array buffer allocation failed" in err.value.error_message


async def test_output_never_corrupts_the_protocol(
    build: Build, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, "sockway.function")
    fn = build("cjs.stdout")
    assert await fn.invoke({}, call(rid="r-out")) == "ok"
    assert await fn.invoke({}, call()) == "ok"
    assert "[r-out] raw stdout line" in caplog.text and "[r-out] raw stderr line" in caplog.text
    with pytest.raises(InvocationError) as err:
        await build("cjs.circular").invoke({}, call())
    assert err.value.error_type == "Runtime.MarshalError"
    # Reading stdin finds it empty and cannot take the next request.
    reader = build("cjs.stdin")
    assert await reader.invoke({}, call()) == "stdin:"
    # The warm worker's stdin has ended: the promise never settles, null once the loop is empty.
    assert await reader.invoke({}, call()) is None


async def test_reserved_concurrency_throttles(build: Build) -> None:
    fn = build("cjs.sleepy", reserved_concurrency=1)
    first = asyncio.create_task(fn.invoke({}, call(timeout_s=2)))
    await asyncio.sleep(0.2)
    with pytest.raises(InvocationError) as err:
        await fn.invoke({}, call())
    assert (err.value.error_type, err.value.error_message) == (
        "TooManyRequestsException",
        "Rate Exceeded.",
    )
    with pytest.raises(InvocationTimeout):
        await first


def test_check_handler_ref_finds_node_files(tmp_path: Path) -> None:
    code = write_code(tmp_path / "code")
    for ref in ("cjs.handler", "esm.handler", "typed/app.handler", "old.handler"):
        check_handler_ref(ref, code, "nodejs")
    with pytest.raises(HandlerLoadError, match=r"no nowhere\.js, nowhere\.mjs or nowhere\.cjs"):
        check_handler_ref("nowhere.handler", code, "nodejs")
    with pytest.raises(HandlerLoadError, match=r"\[dir/\]file.export"):
        check_handler_ref("nodot", code, "nodejs")


async def test_missing_node_is_a_clear_error(tmp_path: Path) -> None:
    from sockway.runtimes.node_sdk import NodeNotFound

    runtime = NodeRuntime(NodejsSettings(node="no-such-node-xyz", aws_sdk=[]), tmp_path)
    runtime.used = True
    with pytest.raises(NodeNotFound, match="'no-such-node-xyz' was not found on PATH"):
        await runtime.prepare()


def test_lambda_node_runtime_names_mean_nodejs(tmp_path: Path) -> None:
    from sockway.gateway.config import parse_config

    code = write_code(tmp_path / "code")
    raw = {
        "apis": [
            {
                "name": "t",
                "type": "websocket",
                "code_dir": str(code),
                "runtime": "nodejs20.x",
                "routes": {
                    "$default": "cjs.handler",
                    "other": {"handler": "esm.handler", "runtime": "nodejs22.x"},
                },
            }
        ]
    }
    settings = parse_config(raw, tmp_path)  # the Node files are found: checked as nodejs
    api = settings.apis[0]
    assert api.runtime == "nodejs"
    assert api.routes["other"].runtime == "nodejs"  # type: ignore[union-attr]


def test_the_bootstrap_files_are_package_data() -> None:
    import fnmatch
    import tomllib

    from sockway.runtimes.nodejs import NODE_DIR

    root = Path(__file__).resolve().parents[2]
    patterns = tomllib.loads((root / "pyproject.toml").read_text())["tool"]["setuptools"][
        "package-data"
    ]["sockway"]
    shipped = [f"runtimes/node/{p.name}" for p in NODE_DIR.iterdir() if p.is_file()]
    assert shipped and all(any(fnmatch.fnmatch(f, p) for p in patterns) for f in shipped)


async def test_reload_restarts_node_workers_on_a_code_change(tmp_path: Path) -> None:
    code = tmp_path / "code"
    code.mkdir()
    (code / "app.js").write_text("exports.handler = async () => 'v1';")
    pools = WorkerPools(reload=True)
    runtime = NodeRuntime(NodejsSettings(aws_sdk=[]), tmp_path / "state")
    spec = FunctionSpec(ref="app.handler", function_name="app", code_dir=code, runtime="nodejs")
    fn = NodeIntegration(spec, pools, runtime)
    pools.add(spec, fn)
    try:
        assert await fn.invoke({}, call()) == "v1"
        (code / "app.js").write_text("exports.handler = async () => 'v2';")
        loop = asyncio.get_running_loop()
        deadline = loop.time() + 15
        while await fn.invoke({}, call()) != "v2":
            assert loop.time() < deadline, "the edited handler never ran"
            await asyncio.sleep(0.1)
    finally:
        await pools.aclose()


SDK_PACKAGE = {
    "package.json": '{"name": "@aws-sdk/client-fake", "version": "3.0.0", "exports": '
    '{"import": "./index.mjs", "require": "./index.cjs"}}',
    "index.mjs": "export const where = 'sdk (esm)';",
    "index.cjs": "exports.where = 'sdk (cjs)';",
}


async def test_the_installed_sdk_resolves_behind_the_handlers_own_modules(tmp_path: Path) -> None:
    sdk = tmp_path / "sdk"
    for name, text in SDK_PACKAGE.items():
        path = sdk / "node_modules" / "@aws-sdk" / "client-fake" / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    code = tmp_path / "code"
    files = {
        "esm.mjs": "import { where } from '@aws-sdk/client-fake';\n"
        "export const handler = async () => where;",
        "nested.mjs": "import { where } from './lib/deep.mjs';\n"
        "export const handler = async () => 'nested ' + where;",
        "lib/deep.mjs": "export { where } from '@aws-sdk/client-fake';",
        "cjs.js": "exports.handler = async () => require('@aws-sdk/client-fake').where;",
        "own/app.mjs": "import { where } from '@aws-sdk/client-fake';\n"
        "export const handler = async () => where;",
        "own/node_modules/@aws-sdk/client-fake/package.json": '{"name": "@aws-sdk/client-fake", '
        '"exports": "./mine.mjs"}',
        "own/node_modules/@aws-sdk/client-fake/mine.mjs": "export const where = 'bundled';",
        "missing.mjs": "import 'not-anywhere-xyz';\nexport const handler = async () => 1;",
    }
    for name, text in files.items():
        path = code / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    pools = WorkerPools(reload=False)
    runtime = NodeRuntime(NodejsSettings(aws_sdk=[], sdk_dir=sdk), tmp_path / "state")

    def make(ref: str) -> NodeIntegration:
        spec = FunctionSpec(ref=ref, function_name="f", code_dir=code, runtime="nodejs")
        integration = NodeIntegration(spec, pools, runtime)
        pools.add(spec, integration)
        return integration

    try:
        assert await make("esm.handler").invoke({}, call()) == "sdk (esm)"
        assert await make("nested.handler").invoke({}, call()) == "nested sdk (esm)"
        assert await make("cjs.handler").invoke({}, call()) == "sdk (cjs)"
        assert await make("own/app.handler").invoke({}, call()) == "bundled"
        with pytest.raises(InvocationError) as err:
            await make("missing.handler").invoke({}, call())
        assert err.value.error_type == "Runtime.ImportModuleError"
        assert "not-anywhere-xyz" in err.value.error_message
    finally:
        await pools.aclose()


async def test_aws_host_names_reach_the_gateway_when_asked(tmp_path: Path) -> None:
    """``SOCKWAY_AWS_HOSTS`` (issue 14's switch): a handler that builds
    ``{apiId}.execute-api.{region}.amazonaws.com`` itself reaches that address."""
    from aiohttp import web

    async def answer(request: web.Request) -> web.Response:
        return web.Response(text=f"local {request.host} {request.path}")

    app = web.Application()
    app.router.add_get("/{tail:.*}", answer)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    code = tmp_path / "code"
    code.mkdir()
    (code / "app.js").write_text(
        "const http = require('http');\n"
        "const get = (url) => new Promise((resolve, reject) => http.get(url, (res) => {\n"
        "  let body = ''; res.on('data', (c) => (body += c)); res.on('end', () => resolve(body));\n"
        "}).on('error', (e) => reject(e)));\n"
        "exports.handler = async () => get('http://a1b2c3d4e5.execute-api.us-east-1.amazonaws.com/prod/x');\n"
    )
    pools = WorkerPools(reload=False)
    runtime = NodeRuntime(NodejsSettings(aws_sdk=[]), tmp_path / "state")
    spec = FunctionSpec(
        ref="app.handler",
        function_name="f",
        code_dir=code,
        runtime="nodejs",
        environment={"SOCKWAY_AWS_HOSTS": f"127.0.0.1:{port}"},
    )
    fn = NodeIntegration(spec, pools, runtime)
    pools.add(spec, fn)
    try:
        answer_text = await fn.invoke({}, call())
        assert answer_text == "local a1b2c3d4e5.execute-api.us-east-1.amazonaws.com /prod/x"
    finally:
        await pools.aclose()
        await runner.cleanup()


async def test_json_log_format_and_level(build: Build, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, "sockway.function")
    env = {"AWS_LAMBDA_LOG_FORMAT": "JSON", "AWS_LAMBDA_LOG_LEVEL": "INFO"}
    fn = build("cjs.jsonLogs", environment=env)
    assert await fn.invoke({}, call(rid="rid-json")) == "logged"
    # The records the invocation wrote. The module's init line ("init of cjs", no requestId)
    # may be read after the worker took this request and then carries its id in the gateway's
    # prefix too (a cold start's init runs for the invocation that caused it): not counted.
    records = [
        record
        for record in (
            json.loads(r.getMessage().split("[rid-json] ", 1)[1])
            for r in caplog.records
            if "[rid-json] {" in r.getMessage()
        )
        if record.get("requestId") == "rid-json"
    ]
    assert [(r["level"], r["message"]) for r in records[:2]] == [
        ("INFO", "as json 42"),
        ("ERROR", records[1]["message"]),
    ]
    assert records[0]["requestId"] == "rid-json" and records[0]["timestamp"].endswith("Z")
    assert records[1]["errorType"] == "TypeError" and records[1]["errorMessage"] == "logged error"
    assert "too detailed" not in caplog.text  # below AWS_LAMBDA_LOG_LEVEL
