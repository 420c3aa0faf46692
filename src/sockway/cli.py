"""The ``sockway`` command: ``serve`` and ``check-config``."""

from __future__ import annotations

import contextlib
import logging
import os
import socket
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from sockway import __version__
from sockway.brokers.settings import MAX_WORKERS
from sockway.gateway.config import ConfigError, load_config
from sockway.serving import fail, serve_config
from sockway.transport.listener import ListenError

if TYPE_CHECKING:
    from sockway.projects.launch import PreparedProject

log = logging.getLogger("sockway")


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="sockway")
def main() -> None:
    """sockway: a self-hosted WebSocket gateway compatible with AWS API Gateway WebSocket APIs."""


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
        fail(["--broker: only with --template or --serverless (else set broker: in the file)"])
    if soketi_path is not None and (template_path is not None or serverless_path is not None):
        fail(["--soketi-config: not with --template or --serverless"])
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
        serve_config(
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
        fail(["give one of --config, --template and --serverless"])
    try:
        if template_path is not None:
            return prepare(template_path, "template", **options)
        assert serverless_path is not None
        return prepare(serverless_path, "serverless", **options)
    except ConfigError as exc:
        fail(exc.problems)
    except RuntimeError as exc:
        fail([str(exc)])
    raise AssertionError("unreachable")


def _reserve(host: str) -> socket.socket:
    """A free port on ``host``, bound (not listening) until the gateway listens on it."""
    from sockway.transport.listener import reserve_port

    try:
        return reserve_port(host, 0)
    except ListenError as exc:
        click.echo(f"error: {exc}", err=True)
        sys.exit(1)


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
            fail(["--template / --serverless: check one project at a time"])
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
            fail(exc.problems)
            return
        click.echo(f"{source}: OK ({len(settings.apis)} API(s))")
        return
    if not config_paths:
        fail(["give a configuration file, --template or --serverless"])
    failed = False
    for path in config_paths:
        try:
            with _isolated_imports():
                settings = load_config(path)
        except ConfigError as exc:
            failed = True
            if len(config_paths) == 1:
                fail(exc.problems)
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
