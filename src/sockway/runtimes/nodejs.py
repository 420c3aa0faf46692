"""The Node.js runtime (``runtime: nodejs``): each function in Node.js worker processes of its own.

The same guarantees as ``runtime: process`` (``runtimes.process``, whose pool this reuses:
warm reuse, ``reserved_concurrency``, ``timeout_s`` enforced by killing the worker, cold
starts measured as ``Init Duration``, ``START``/``END``/``REPORT`` lines, ``--reload``), with a
worker that is ``node runtimes/node/bootstrap.mjs`` speaking the same length-prefixed JSON
protocol (``runtimes.worker_main``) and running handlers by Lambda's Node.js contract
(``exports.handler`` / ``export const handler``, async or callback style, Lambda's ``context``,
errors as ``{errorType, errorMessage, trace}``; see the bootstrap's docstring).

Differences from the Python worker, and why:

- Pipes: the worker's requests come on fd 0, its answers go out on a pipe of their own (passed
  as an extra fd), and fd 1 and fd 2 are one pipe for the handler's output. Node cannot move
  its own stdout, so this keeps ``process.stdout.write`` and children that inherit fd 1 from
  ever corrupting the protocol.
- Memory (``memory_mb``): V8's old generation is held to ``HEAP_SHARE`` of it
  (``--max-old-space-size``) and the process's private writable memory (``RLIMIT_DATA``:
  heap, young generation, Buffers, native allocations) to ``memory_mb + NODE_OVERHEAD_MB``
  (Node's own baseline is ~50 MB of data). Reaching V8's limit aborts the process ("JavaScript
  heap out of memory"), reported as ``Runtime.OutOfMemory``; a Buffer beyond the process limit
  fails with ``RangeError: Array buffer allocation failed``, a handler error.
- An uncaught exception or unhandled rejection fails the invocation with that error and ends
  the worker (Lambda's Node.js runtime exits with status 129 / 128); the next invocation gets
  a fresh worker.
- AppSync Events code handlers (APPSYNC_JS ``onPublish(ctx)`` / ``onSubscribe(ctx)``) run in
  the same workers in ``appsync`` mode: the bootstrap adapts them to the direct-Lambda answer
  the events front door already reads (``events.handler_events``).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import resource
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sockway.runtimes.environment import dev_ca_bundle_path
from sockway.runtimes.inprocess import HandlerLoadError
from sockway.runtimes.node_sdk import NodejsSettings, NodeNotFound, ensure_aws_sdk, find_executable
from sockway.runtimes.pipes import Pipes
from sockway.runtimes.process import ProcessIntegration, WorkerPools
from sockway.runtimes.worker import LogLine, Worker, WorkerExited

if TYPE_CHECKING:
    from sockway.runtimes.factory import FunctionSpec

NODE_DIR = Path(__file__).with_name("node")
BOOTSTRAP = NODE_DIR / "bootstrap.mjs"
HEAP_SHARE = 0.9  # of memory_mb for V8's old generation; the young one and code take the rest
NODE_OVERHEAD_MB = 160  # Node's baseline data (~50 MB) + young generation (3 x 16 MB) + slack
# V8's words when it gives up (heap limit, or an allocation refused by the process limit).
OOM_MARKERS = ("JavaScript heap out of memory", "Fatal process out of memory")
EXTENSIONS = (".js", ".mjs", ".cjs")


def check_node_handler_ref(ref: str, code_dir: Path | None) -> None:
    """Check that ``ref`` (``[dir/]module.export``) names a file Lambda's Node.js runtime would
    load: ``module.js``, ``.mjs`` or ``.cjs`` under ``code_dir``, or a package in its
    ``node_modules``. A missing export is reported at the first init (``Runtime.HandlerNotFound``).
    """
    root = code_dir or Path.cwd()
    head, _, tail = ref.rpartition("/")
    module, dot, export = tail.partition(".")
    if not module or not dot or not export:
        raise HandlerLoadError(
            f"handler '{ref}' must be written as [dir/]file.export (e.g. index.handler)"
        )
    base = root / head / module
    if any(base.with_name(module + ext).is_file() for ext in EXTENSIONS):
        return
    if not head and (root / "node_modules" / module).is_dir():
        return
    where = root / head if head else root
    raise HandlerLoadError(f"no {module}.js, {module}.mjs or {module}.cjs in {where}")


@dataclass
class NodeRuntime:
    """What every Node.js function shares: the executable, the AWS SDK directory, the version."""

    settings: NodejsSettings = field(default_factory=NodejsSettings)
    state_dir: Path = Path(".sockway")
    node: str | None = None  # absolute path, found by ``prepare``
    major: int = 20
    used: bool = False

    @property
    def sdk_dir(self) -> Path:
        return self.settings.sdk_dir or (self.state_dir / "nodejs")

    async def prepare(self) -> None:
        """Find Node.js and install the AWS SDK (once) if any Node.js function was built;
        ``NodeNotFound`` when Node.js is missing or too old."""
        if not self.used:
            return
        await self._find_node()
        await ensure_aws_sdk(self.settings, self.sdk_dir)

    async def _find_node(self) -> str:
        if self.node is not None:
            return self.node
        node = find_executable(self.settings.node, "nodejs.node")
        proc = await asyncio.create_subprocess_exec(
            node, "--version", stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.DEVNULL
        )
        out, _ = await proc.communicate()
        version = out.decode().strip().lstrip("v")
        try:
            major, minor = (int(x) for x in version.split(".")[:2])
        except ValueError:
            raise NodeNotFound(f"'{node} --version' answered {version!r}") from None
        # module.register (the ES module resolve hooks) came in 18.19 and 20.6.
        if (major, minor) < (18, 19) or (major == 20 and minor < 6):
            raise NodeNotFound(
                f"runtime: nodejs needs Node.js 18.19, 20.6 or newer; {node} is v{version}"
            )
        self.node, self.major = node, major
        return node

    def environment(self, base: dict[str, str]) -> dict[str, str]:
        """Lambda's Node.js variables over a function's environment (``process`` runtime's)."""
        env = dict(base)
        env["AWS_EXECUTION_ENV"] = f"AWS_Lambda_nodejs{self.major}.x"
        sdk = str(self.sdk_dir.resolve() / "node_modules")
        env["NODE_PATH"] = os.pathsep.join(p for p in (sdk, env.get("NODE_PATH")) if p)
        if env.get("AWS_CA_BUNDLE") == str(dev_ca_bundle_path(self.state_dir)):
            # ``certificate: auto``: the SDK for JavaScript v3 ignores AWS_CA_BUNDLE, Node reads
            # NODE_EXTRA_CA_CERTS (one file) at start, so https://{domainName}/{stage} verifies
            # against sockway's development CA — next to any extra CAs inherited.
            env["NODE_EXTRA_CA_CERTS"] = str(self._node_ca_file(env.get("NODE_EXTRA_CA_CERTS")))
        return env

    def _node_ca_file(self, inherited: str | None) -> Path:
        bundle = dev_ca_bundle_path(self.state_dir)
        if not inherited or inherited == str(bundle):
            return bundle
        combined = bundle.with_name("node-ca-bundle.pem")
        try:
            extra = Path(inherited).read_text()
        except OSError:
            return bundle
        text = bundle.read_text() + "\n" + extra
        if not combined.is_file() or combined.read_text() != text:
            combined.write_text(text)
        return combined


class NodeIntegration(ProcessIntegration):
    """One Node.js function (or one APPSYNC_JS operation) served by its own Node workers."""

    def __init__(
        self, spec: FunctionSpec, pools: WorkerPools, runtime: NodeRuntime, mode: str = "lambda"
    ) -> None:
        super().__init__(spec, pools)
        self._runtime = runtime
        self._mode = mode

    async def _spawn(self) -> Worker:
        spec = self._spec
        node = await self._runtime._find_node()
        env = self._runtime.environment(self._pools.environment(spec))
        return await NodeWorker.start(
            node=node,
            code_dir=spec.code_dir,
            ref=spec.ref,
            mode=self._mode,
            sdk_dir=self._runtime.sdk_dir,
            memory_mb=spec.memory_mb,
            env=env,
            generation=self._generation,
            log_line=self._log,
        )


class NodeWorker(Worker):
    """A ``node bootstrap.mjs`` worker (see the module docstring for its pipes and limits)."""

    out_of_memory = False
    exiting = False

    @classmethod
    async def start(
        cls,
        *,
        node: str,
        code_dir: Path | None,
        ref: str,
        mode: str,
        sdk_dir: Path,
        memory_mb: int,
        env: dict[str, str],
        generation: int,
        log_line: LogLine,
    ) -> NodeWorker:
        pipes = Pipes()
        old_space = max(32, int(memory_mb * HEAP_SHARE))
        argv = [
            node,
            f"--max-old-space-size={old_space}",
            str(BOOTSTRAP),
            str(pipes.replies_w),
            str(code_dir or ""),
            ref,
            mode,
            str(sdk_dir.resolve() / "node_modules"),
        ]
        holder: list[NodeWorker] = []

        def watch(request_id: str | None, line: str) -> None:
            if holder and any(marker in line for marker in OOM_MARKERS):
                holder[0].out_of_memory = True
            log_line(request_id, line)

        worker = await cls.launch(
            argv,
            pipes,
            generation=generation,
            log_line=watch,
            stdout=pipes.output_w,  # fd 1 and fd 2: the handler's output
            pass_fds=(pipes.replies_w,),
            env=env,
            cwd=code_dir,
        )
        assert isinstance(worker, NodeWorker)
        holder.append(worker)
        limit = (memory_mb + NODE_OVERHEAD_MB) * 1024 * 1024
        with contextlib.suppress(OSError, ValueError):  # already gone: reported at its init
            _, hard = resource.prlimit(worker.pid, resource.RLIMIT_DATA)
            if hard != resource.RLIM_INFINITY:
                limit = min(limit, hard)
            resource.prlimit(worker.pid, resource.RLIMIT_DATA, (limit, hard))
        return worker

    @property
    def alive(self) -> bool:
        return super().alive and not self.exiting

    async def _receive(self) -> dict[str, Any]:
        try:
            message = await super()._receive()
        except WorkerExited as exc:
            if exc.error_type == "Runtime.ExitError":
                # V8 prints why it aborted on stderr: read it before naming the cause.
                await self.output_closed()
                if self.out_of_memory:
                    raise WorkerExited(exc.reason, "Runtime.OutOfMemory") from None
            raise
        if message.get("exiting"):
            self.exiting = True  # answered, then ends (uncaught error): not reused
        return message


__all__ = ["NodeIntegration", "NodeNotFound", "NodeRuntime", "check_node_handler_ref"]
