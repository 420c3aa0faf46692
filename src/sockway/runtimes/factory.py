"""Build an ``Integration`` from a handler reference, whatever its form.

Every handler slot (websocket routes and authorizers today; AppSync Events handlers and
Pusher webhooks as those front doors arrive) goes through ``IntegrationFactory.build``, so
each runtime works for every slot.

Forms (``runtimes.refs`` tells them apart):
- ``module.function`` — a Python function loaded from the API's ``code_dir`` (in-process);
- ``module.function`` with ``runtime: process`` — the same function run in isolated worker
  processes of its own (``runtimes.process``);
- ``[dir/]file.export`` with ``runtime: nodejs`` — a JavaScript handler in Node.js workers
  (``runtimes.nodejs``);
- ``http://…`` / ``https://…`` — an HTTP endpoint (``runtimes.http``), or with ``http_proxy``
  settings an API Gateway ``HTTP_PROXY`` integration (``runtimes.http_proxy``);
- ``arn:aws:lambda:…:function:NAME[:Q]`` / ``lambda:NAME[:Q]`` — AWS Lambda
  (``runtimes.aws_lambda``).

The reference's form is decided first: ``runtime`` only applies to ``module.function``. The
factory owns what runtimes share (thread pool, worker pools, HTTP session, Lambda clients); the
gateway calls ``aclose()`` once every handler has finished.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from concurrent.futures import Executor
from dataclasses import dataclass, field
from pathlib import Path

from sockway.runtimes.aws_lambda import LambdaClients, LambdaIntegration
from sockway.runtimes.base import Integration
from sockway.runtimes.http import HttpIntegration, HttpTransport
from sockway.runtimes.http_proxy import HttpProxyIntegration
from sockway.runtimes.inprocess import HandlerLoadError, PythonIntegration, load_handler
from sockway.runtimes.node_sdk import NodejsSettings
from sockway.runtimes.nodejs import NodeIntegration, NodeRuntime, check_node_handler_ref
from sockway.runtimes.process import WorkerPools, check_process_handler_ref
from sockway.runtimes.refs import (
    HandlerForm,
    InvalidHandlerRef,
    check_remote_ref,
    handler_form,
    parse_lambda_ref,
    safe_url,
)
from sockway.runtimes.settings import HttpProxySettings, HttpSettings, LambdaSettings

log = logging.getLogger("sockway.integrations")


@dataclass(frozen=True)
class FunctionSpec:
    """Everything a runtime may need to know about one handler."""

    ref: str
    function_name: str
    code_dir: Path | None = None
    region: str = "us-east-1"
    account_id: str = "123456789012"
    memory_mb: int = 128
    environment: Mapping[str, str] = field(default_factory=dict)
    runtime: str = "inprocess"  # "inprocess" | "process" | "nodejs" (runtimes.settings.Runtime)
    timeout_s: float | None = None  # as configured; each Invocation carries its deadline
    reserved_concurrency: int | None = None  # process runtime: over it → throttled
    http: HttpSettings = field(default_factory=HttpSettings)
    aws_lambda: LambdaSettings = field(default_factory=LambdaSettings)
    http_proxy: HttpProxySettings | None = None  # an http(s) ref as HTTP_PROXY, not an event

    @property
    def function_arn(self) -> str:
        return f"arn:aws:lambda:{self.region}:{self.account_id}:function:{self.function_name}"


def check_handler_ref(ref: str, code_dir: Path | None, runtime: str = "inprocess") -> None:
    """Raise ``HandlerLoadError`` with a readable message if ``ref`` cannot be served."""
    try:
        form = check_remote_ref(ref)
    except InvalidHandlerRef as exc:
        raise HandlerLoadError(str(exc)) from None
    if form is not HandlerForm.PYTHON:
        return
    if runtime == "process":
        check_process_handler_ref(ref, code_dir)  # never imported into the gateway
        return
    if runtime == "nodejs":
        check_node_handler_ref(ref, code_dir)
        return
    load_handler(ref, code_dir)


class IntegrationFactory:
    """Creates integrations; owns what runtimes share (the handler thread pool, ...)."""

    def __init__(
        self,
        executor: Executor,
        *,
        reload: bool = False,
        nodejs: NodejsSettings | None = None,
        state_dir: Path | None = None,
    ) -> None:
        self.executor = executor
        self.workers = WorkerPools(reload=reload)
        self.nodejs = NodeRuntime(nodejs or NodejsSettings(), state_dir or Path(".sockway"))
        self.http = HttpTransport()
        self.lambdas = LambdaClients()
        self._python: dict[tuple[object, ...], Integration] = {}

    def build(self, spec: FunctionSpec) -> Integration:
        form = handler_form(spec.ref)
        if form is HandlerForm.HTTP:
            return self._build_http(spec)
        if form is HandlerForm.LAMBDA:
            return self._build_lambda(spec)
        # One function behind several slots (a template's function on several routes and on
        # the Invoke API) is one integration: one worker pool, one reserved_concurrency. The
        # timeout is not part of it: each invocation carries its own deadline.
        key = (
            spec.ref,
            spec.function_name,
            spec.code_dir,
            spec.region,
            spec.account_id,
            spec.memory_mb,
            tuple(sorted(spec.environment.items())),
            spec.runtime,
            spec.reserved_concurrency,
        )
        shared = self._python.get(key)
        if shared is None:
            shared = self._python[key] = self._build_python(spec)
        return shared

    def _build_python(self, spec: FunctionSpec) -> Integration:
        if spec.runtime == "process":
            return self.workers.build(spec)
        if spec.runtime == "nodejs":
            return self.build_node(spec)
        self.workers.note_environment(spec.environment)
        if self.workers.reload:
            log.warning(
                "--reload does not apply to in-process handler %s (set runtime: process)",
                spec.function_name,
            )
        func = load_handler(spec.ref, spec.code_dir)
        return PythonIntegration(
            func=func,
            function_name=spec.function_name,
            function_arn=spec.function_arn,
            memory_limit_in_mb=spec.memory_mb,
            executor=self.executor,
        )

    def _build_http(self, spec: FunctionSpec) -> Integration:
        self.http.register(spec.ref, spec.http.max_concurrency)
        if spec.http_proxy is not None:
            return HttpProxyIntegration(
                url=spec.ref,
                function_name=spec.function_name,
                settings=spec.http_proxy,
                transport=self.http,
                max_response_bytes=spec.http.max_response_bytes,
            )
        key = spec.http.signing_key()
        if key is None:
            log.warning(
                "%s calls %s unsigned: set http.secret so the endpoint can verify the caller",
                spec.function_name,
                safe_url(spec.ref),
            )
        return HttpIntegration(
            url=spec.ref,
            function_name=spec.function_name,
            function_arn=spec.function_arn,
            transport=self.http,
            signing_key=key,
            headers=spec.http.headers,
            max_response_bytes=spec.http.max_response_bytes,
        )

    def _build_lambda(self, spec: FunctionSpec) -> Integration:
        target = parse_lambda_ref(spec.ref, spec.region)
        return LambdaIntegration(
            target=target,
            function_name=spec.function_name,
            invocation_type=spec.aws_lambda.invocation_type,
            pool=self.lambdas.pool(target.region, spec.aws_lambda),
        )

    def build_node(self, spec: FunctionSpec, mode: str = "lambda") -> Integration:
        """A Node.js function; ``mode`` ``appsync:onPublish`` / ``appsync:onSubscribe`` runs the
        APPSYNC_JS file ``spec.ref`` (AppSync Events code handlers)."""
        self.nodejs.used = True
        return self.workers.add(spec, NodeIntegration(spec, self.workers, self.nodejs, mode))

    async def prepare(self) -> None:
        """Before serving: find Node.js and install the AWS SDK for Node.js handlers, if any
        (``runtimes.node_sdk``)."""
        await self.nodejs.prepare()

    async def aclose(self) -> None:
        """Stop worker processes and the code watcher, then release shared clients (HTTP
        session, Lambda threads); call once, at gateway stop."""
        await self.workers.aclose()
        await self.http.close()
        await self.lambdas.close()


__all__ = ["FunctionSpec", "HandlerLoadError", "IntegrationFactory", "check_handler_ref"]
