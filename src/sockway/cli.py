"""The ``sockway`` command: ``serve`` and ``check-config``."""

from __future__ import annotations

import contextlib
import gc
import logging
import os
import socket
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from sockway import __version__
from sockway.brokers.settings import MAX_WORKERS, workers_problem
from sockway.demo.settings import demo_config
from sockway.gateway.config import ConfigError, load_config, parse_config
from sockway.gateway.settings import Settings, parse_hostport
from sockway.gateway.worker_control import report_ready
from sockway.observability.logging import setup_logging
from sockway.transport.listener import ListenError

if TYPE_CHECKING:
    from sockway.gateway.gateway import Gateway
    from sockway.projects.launch import PreparedProject

log = logging.getLogger("sockway")


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="sockway")
def main() -> None:
    """sockway: a self-hosted WebSocket gateway compatible with AWS API Gateway WebSocket APIs."""


def _fail(problems: list[str]) -> None:
    click.echo("Invalid configuration:", err=True)
    for line in problems:
        click.echo(f"  {line}", err=True)
    sys.exit(1)


def _project_options(command: Callable[..., None]) -> Callable[..., None]:
    """The options that read an existing project instead of sockway's own YAML."""
    options = [
        click.option(
            "--template",
            "template_path",
            type=click.Path(path_type=Path, exists=True),
            help="SAM / CloudFormation template (YAML or JSON), or a CDK cdk.out directory.",
        ),
        click.option(
            "--serverless",
            "serverless_path",
            type=click.Path(path_type=Path, exists=True),
            help="serverless.yml of a Serverless Framework project.",
        ),
        click.option(
            "--parameter",
            "parameters",
            multiple=True,
            metavar="NAME=VALUE",
            help="Template parameter value (repeatable); overrides its Default.",
        ),
        click.option(
            "--api-key",
            "api_keys",
            multiple=True,
            metavar="LOGICAL_ID=KEY",
            help="Pin the key of an AWS::AppSync::ApiKey (default: generated at start).",
        ),
        click.option(
            "--stage",
            help="serverless.yml: the stage (${opt:stage}; default provider.stage or dev).",
        ),
        click.option(
            "--region",
            help="--template: the stack's region (AWS::Region; default us-east-1).",
        ),
    ]
    for option in reversed(options):
        command = option(command)
    return command


@main.command()
@click.option(
    "--config",
    "config_path",
    type=click.Path(path_type=Path),
    help="YAML configuration file. Without it, an embedded demo API is served.",
)
@click.option(
    "--soketi-config",
    "soketi_path",
    type=click.Path(path_type=Path),
    help="A soketi JSON configuration, read as soketi reads it (with SOKETI_* variables).",
)
@_project_options
@click.option(
    "--dynamodb-endpoint",
    metavar="URL",
    help="DynamoDB the project's tables are created in (default: an embedded moto server).",
)
@click.option(
    "--broker",
    "broker_url",
    metavar="REDIS_URL",
    help="--template/--serverless: the Redis broker of the gateway (needed by --workers N).",
)
@click.option("--host", help="Override the host of 'listen'.")
@click.option("--port", type=int, help="Override the port of 'listen' (0 picks a free port).")
@click.option(
    "--reload",
    is_flag=True,
    help="Restart a process-runtime function's workers when files under its code_dir change.",
)
@click.option(
    "--workers",
    type=click.IntRange(1, MAX_WORKERS),
    help="Gateway processes sharing the port (overrides 'workers'; more than 1 needs 'broker').",
)
# Internal: set by the supervisor of --workers N on the processes it starts.
@click.option("--worker-fd", type=int, hidden=True)
@click.option("--tls-port", type=int, hidden=True)
def serve(
    config_path: Path | None,
    soketi_path: Path | None,
    template_path: Path | None,
    serverless_path: Path | None,
    parameters: tuple[str, ...],
    api_keys: tuple[str, ...],
    stage: str | None,
    region: str | None,
    dynamodb_endpoint: str | None,
    broker_url: str | None,
    host: str | None,
    port: int | None,
    reload: bool,
    workers: int | None,
    worker_fd: int | None,
    tls_port: int | None,
) -> None:
    """Start the gateway (the embedded demo when no --config, --template or --serverless)."""
    prepared = None
    if broker_url is not None and template_path is None and serverless_path is None:
        _fail(["--broker: only with --template or --serverless (else set broker: in the file)"])
    if soketi_path is not None and (template_path is not None or serverless_path is not None):
        _fail(["--soketi-config: not with --template or --serverless"])
    if template_path is not None or serverless_path is not None:
        held = None
        if port == 0:  # chosen now (the handlers' environment names it), held until served
            held = _reserve(host or "127.0.0.1")
        prepared = _prepare_project(
            config_path,
            template_path,
            serverless_path,
            parameters=parameters,
            api_keys=api_keys,
            stage=stage,
            region=region,
            host=host,
            port=port,
            dynamodb_endpoint=dynamodb_endpoint,
            broker_url=broker_url,
            start_services=True,
            progress=lambda line: click.echo(line, err=True),
            listen_socket=held,
        )
        config_path = prepared.config_path
        host = port = None  # the generated configuration has the listen address (port fixed)
        click.echo("\n".join(prepared.banner()))
    try:
        held = prepared.listen_socket if prepared is not None else None
        _serve_config(
            config_path, soketi_path, host, port, reload, workers, worker_fd, tls_port, held
        )
    finally:
        if prepared is not None:
            prepared.stop()


def _prepare_project(
    config_path: Path | None,
    template_path: Path | None,
    serverless_path: Path | None,
    **options: Any,
) -> PreparedProject:
    from sockway.projects.launch import prepare

    if sum(p is not None for p in (config_path, template_path, serverless_path)) > 1:
        _fail(["give one of --config, --template and --serverless"])
    try:
        if template_path is not None:
            return prepare(template_path, "template", **options)
        assert serverless_path is not None
        return prepare(serverless_path, "serverless", **options)
    except ConfigError as exc:
        _fail(exc.problems)
    except RuntimeError as exc:
        _fail([str(exc)])
    raise AssertionError("unreachable")


def _reserve(host: str) -> socket.socket:
    """A free port on ``host``, bound (not listening) until the gateway listens on it."""
    from sockway.transport.listener import reserve_port

    try:
        return reserve_port(host, 0)
    except ListenError as exc:
        click.echo(f"error: {exc}", err=True)
        sys.exit(1)


def _serve_config(
    config_path: Path | None,
    soketi_path: Path | None,
    host: str | None,
    port: int | None,
    reload: bool,
    workers: int | None,
    worker_fd: int | None,
    tls_port: int | None,
    listen_socket: socket.socket | None = None,
) -> None:
    """``listen_socket``: already bound to the configuration's ``listen`` (project mode's
    ``--port 0``); the gateway (or the supervisor) keeps it instead of binding anew."""
    try:
        if soketi_path is not None:
            if config_path is not None:
                _fail(["--config and --soketi-config: give one of them"])
            settings = _soketi_settings(soketi_path)
            config_path = soketi_path  # not the demo
        elif config_path is None:
            settings = parse_config(demo_config("127.0.0.1:8080", Path(".sockway")), Path.cwd())
        else:
            settings = load_config(config_path)
    except ConfigError as exc:
        _fail(exc.problems)
        return
    if host is not None or port is not None:
        h, p = parse_hostport(settings.listen)
        settings = settings.model_copy(
            update={"listen": f"{host or h}:{p if port is None else port}"}
        )
    if tls_port is not None and settings.tls is not None and settings.tls.listen is not None:
        tls = settings.tls.model_copy(
            update={"listen": f"{parse_hostport(settings.tls.listen)[0]}:{tls_port}"}
        )
        settings = settings.model_copy(update={"tls": tls})
    count = settings.workers if workers is None else workers
    problem = workers_problem(count, settings.broker)
    if worker_fd is None and problem is not None:
        _fail([f"--workers: {problem}"])
    setup_logging(settings.log_format, settings.log_level)
    try:
        if worker_fd is None and count > 1 and soketi_path is not None:
            _fail(["--workers: not available with --soketi-config (write a sockway config)"])
        if worker_fd is None and count > 1:
            from sockway.gateway.supervisor import supervise

            assert config_path is not None  # the demo has no broker, so one worker
            argv = _worker_argv(config_path.resolve(), settings, reload)
            sys.exit(supervise(settings, count, argv, f"sockway {__version__}", listen_socket))
        import uvloop

        uvloop.run(_serve(settings, config_path is None, reload, worker_fd, listen_socket))
    except ListenError as exc:
        click.echo(f"error: {exc}", err=True)
        sys.exit(1)
    except ConfigError as exc:
        _fail(exc.problems)


def _soketi_settings(path: Path) -> Settings:
    """``--soketi-config``: soketi's JSON file and ``SOKETI_*`` variables (``pusher.soketi``);
    what does not carry over is printed, what would change clients' view refuses to start."""
    import json
    import os

    from sockway.pusher.soketi import soketi_settings

    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise ConfigError([f"{path}: cannot read: {exc.strerror or exc}"]) from None
    except ValueError as exc:
        raise ConfigError([f"{path}: not a JSON document: {exc}"]) from None
    if not isinstance(doc, dict):
        raise ConfigError([f"{path}: a soketi configuration is a JSON object"])
    result = soketi_settings(doc, os.environ)
    if result.problems:
        raise ConfigError([f"{path}: {line}" for line in result.problems])
    for note in result.notes:
        click.echo(f"soketi config: {note}", err=True)
    return parse_config(result.document, path.resolve().parent)


def _worker_argv(
    config: Path, settings: Settings, reload: bool
) -> Callable[[int, int, int | None], list[str]]:
    """The command line of one worker of ``--workers N`` (the supervisor fills in its control
    socket and the ports it reserved)."""
    host = parse_hostport(settings.listen)[0]

    def argv(fd: int, port: int, tls_port: int | None) -> list[str]:
        args = [sys.executable, "-m", "sockway", "serve", "--config", str(config)]
        args += ["--host", host, "--port", str(port), "--worker-fd", str(fd)]
        args += ["--tls-port", str(tls_port)] if tls_port is not None else []
        return args + (["--reload"] if reload else [])

    return argv


def banner(gateway: Gateway, demo: bool) -> list[str]:
    """What ``sockway serve`` prints once it listens: the URLs of every API."""
    lines = [f"sockway {__version__} listening"]
    if gateway.tls is not None and gateway.tls.ca_file is not None:
        lines.append(
            f"  development CA: {gateway.tls.ca_file}  (trust it: AWS_CA_BUNDLE, "
            "NODE_EXTRA_CA_CERTS, wscat --ca)"
        )
    for ep in gateway.endpoints:
        lines.append(f"  API '{ep.api}':")
        width = max(len(label) for label, _ in ep.urls) + 2
        lines += [f"    {label + ':':<{width}} {url}" for label, url in ep.urls]
    if gateway.listen_info is not None:
        lines.append(f"  health: http://{gateway.listen_info.public_host}:{gateway.port}/health")
    console = gateway.console_url()
    if console is not None:
        lines.append(f"  console: {console}")
    if demo and gateway.endpoints:
        lines.append("")
        lines.append("Try it (two terminals):")
        lines += [f"  {hint}" for hint in gateway.endpoints[0].try_hint]
        lines.append('  > {"action":"echo","data":"hello"}')
        lines.append('  > {"action":"broadcast","data":"hello everyone"}')
    return lines


async def _serve(
    settings: Settings,
    demo: bool,
    reload: bool = False,
    worker_fd: int | None = None,
    listen_socket: socket.socket | None = None,
) -> None:
    from sockway.gateway.gateway import Gateway

    gateway = Gateway(
        settings, reload=reload, reuse_port=worker_fd is not None, listen_socket=listen_socket
    )
    await gateway.start()
    # What startup built (modules, config, routes, handlers) lives as long as the process:
    # moved out of the cyclic collector's way, so a full collection scans what connections
    # allocate, not the whole heap; and young collections 10,000 allocations apart, not 700
    # (most objects die by refcount first). Bench connect, 3,000 handshakes: GC 0.36 → 0.12 s
    # of the gateway's CPU, 4 full collections of ~70 ms → 2 of ~15 ms (bench/ANALYSIS.md).
    gc.collect()
    gc.freeze()
    gc.set_threshold(10_000, 10, 10)
    if worker_fd is None:
        click.echo("\n".join(banner(gateway, demo)), err=False)
        sys.stdout.flush()
    else:
        report_ready(worker_fd, banner(gateway, demo))
    await gateway.serve_forever()


@main.command("check-config")
@click.argument("config_paths", nargs=-1, type=click.Path(path_type=Path))
@_project_options
def check_config(
    config_paths: tuple[Path, ...],
    template_path: Path | None,
    serverless_path: Path | None,
    parameters: tuple[str, ...],
    api_keys: tuple[str, ...],
    stage: str | None,
    region: str | None,
) -> None:
    """Validate configuration files, or a project (--template, --serverless); print every
    problem with its key path or logical id and property (exit 1).

    Each file is checked on its own: the handler modules one file imports are forgotten
    before the next, so two projects may both have an ``app.py``.
    """
    if template_path is not None or serverless_path is not None:
        if len(config_paths) > 1:
            _fail(["--template / --serverless: check one project at a time"])
        prepared = _prepare_project(
            config_paths[0] if config_paths else None,
            template_path,
            serverless_path,
            parameters=parameters,
            api_keys=api_keys,
            stage=stage,
            region=region,
            start_services=False,
        )
        click.echo("\n".join(prepared.project.summary() + prepared.lines))
        source = template_path or serverless_path
        try:
            settings = load_config(prepared.config_path)
        except ConfigError as exc:
            _fail(exc.problems)
            return
        click.echo(f"{source}: OK ({len(settings.apis)} API(s))")
        return
    if not config_paths:
        _fail(["give a configuration file, --template or --serverless"])
    failed = False
    for path in config_paths:
        try:
            with _isolated_imports():
                settings = load_config(path)
        except ConfigError as exc:
            failed = True
            if len(config_paths) == 1:
                _fail(exc.problems)
            click.echo(f"{path}: invalid configuration:", err=True)
            for line in exc.problems:
                click.echo(f"  {line}", err=True)
            continue
        click.echo(f"{path}: OK ({len(settings.apis)} API(s))")
    if failed:
        sys.exit(1)


@contextlib.contextmanager
def _isolated_imports() -> Iterator[None]:
    """Undo what checking one file did to this process: its imports, sys.path, environ."""
    modules, path, environ = set(sys.modules), list(sys.path), dict(os.environ)
    try:
        yield
    finally:
        for name in set(sys.modules) - modules:
            del sys.modules[name]
        sys.path[:] = path
        os.environ.clear()
        os.environ.update(environ)


if __name__ == "__main__":  # pragma: no cover
    main()
