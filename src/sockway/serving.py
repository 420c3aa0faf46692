"""What ``sockway serve`` runs once its options are read: the settings (a configuration file,
a soketi configuration or the embedded demo, with the command line's overrides), then one
gateway on this process's event loop, or the ``--workers N`` supervisor; the banner it prints
once it listens."""

from __future__ import annotations

import gc
import socket
import sys
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

import click

from sockway import __version__
from sockway.brokers.settings import workers_problem
from sockway.demo.settings import demo_config
from sockway.gateway.config import ConfigError, load_config, parse_config
from sockway.gateway.settings import Settings, parse_hostport
from sockway.gateway.worker_control import report_ready
from sockway.observability.logging import setup_logging
from sockway.transport.listener import ListenError

if TYPE_CHECKING:
    from sockway.gateway.gateway import Gateway


def fail(problems: list[str]) -> None:
    click.echo("Invalid configuration:", err=True)
    for line in problems:
        click.echo(f"  {line}", err=True)
    sys.exit(1)


def serve_config(
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
                fail(["--config and --soketi-config: give one of them"])
            settings = _soketi_settings(soketi_path)
            config_path = soketi_path  # not the demo
        elif config_path is None:
            settings = parse_config(demo_config("127.0.0.1:8080", Path(".sockway")), Path.cwd())
        else:
            settings = load_config(config_path)
    except ConfigError as exc:
        fail(exc.problems)
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
        fail([f"--workers: {problem}"])
    setup_logging(settings.log_format, settings.log_level)
    try:
        if worker_fd is None and count > 1 and soketi_path is not None:
            fail(["--workers: not available with --soketi-config (write a sockway config)"])
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
        fail(exc.problems)


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
