"""From a project file to a configuration sockway serves (``sockway serve --template``,
``--serverless``, ``check-config --template``).

``prepare`` translates the project (``projects.template`` / ``projects.serverless``), fixes the
listen address first (``--port 0``: the command has bound a socket to a free port and hands
it over as ``listen_socket``; the handlers' environment names its port, ``PreparedProject``
keeps it bound and the gateway, or the supervisor of ``--workers N``, listens on that very
socket, so nothing can take the port between this choice and the announcement),
starts the local DynamoDB and creates the tables when asked to, and writes the configuration it
produced to ``{state_dir}/project.sockway.yaml`` — the file ``serve`` then runs (and hands to
the workers of ``--workers N``), and the one to read to see what sockway made of the project.
"""

from __future__ import annotations

import hashlib
import socket
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import yaml

from sockway.projects.dependencies import add_dependencies
from sockway.projects.dynamodb import TEST_CREDENTIAL, LocalDynamoDB
from sockway.projects.project import Project
from sockway.projects.template import read_template
from sockway.runtimes.aws_hosts import ENV as AWS_HOSTS_ENV

ProjectKind = Literal["template", "serverless"]
GENERATED_CONFIG = "project.sockway.yaml"


@dataclass
class PreparedProject:
    project: Project
    config_path: Path
    dynamodb: LocalDynamoDB | None = None
    lines: list[str] = field(default_factory=list)
    # ``--port 0``: the bound (not listening) socket holding the chosen port until the
    # gateway listens on it (``listener.reserve_port``); ``None`` for a fixed port.
    listen_socket: socket.socket | None = None

    def banner(self) -> list[str]:
        lines = [*self.project.summary(), f"  configuration: {self.config_path}"]
        lines += [f"  {line}" for line in self.lines]
        return lines

    def stop(self) -> None:
        if self.listen_socket is not None:
            self.listen_socket.close()
        if self.dynamodb is not None:
            self.dynamodb.stop()


def _parse_pairs(pairs: tuple[str, ...], option: str) -> dict[str, str]:
    from sockway.projects.problems import ProjectError

    out: dict[str, str] = {}
    for pair in pairs:
        name, sep, value = pair.partition("=")
        if not sep or not name:
            raise ProjectError([f"{option} {pair!r}: write NAME=VALUE"])
        out[name] = value
    return out


def prepare(
    path: Path,
    kind: ProjectKind,
    *,
    host: str | None = None,
    port: int | None = None,
    parameters: tuple[str, ...] = (),
    api_keys: tuple[str, ...] = (),
    dynamodb_endpoint: str | None = None,
    broker_url: str | None = None,
    stage: str | None = None,
    region: str | None = None,
    start_services: bool = True,
    progress: Callable[[str], None] | None = None,
    listen_socket: socket.socket | None = None,
) -> PreparedProject:
    """Translate, start the local services (``start_services``) and write the configuration;
    ``progress`` is told each slow step (installing dependencies) as it starts and ends.
    ``listen_socket`` (bound, not listening) fixes the port, and is closed by ``stop``."""
    path = path.resolve()
    base = path if path.is_dir() else path.parent
    state_dir = base / ".sockway"
    state_dir.mkdir(parents=True, exist_ok=True)
    host = host or "127.0.0.1"
    if port is None:
        port = 8080
    held = listen_socket
    if held is not None:
        port = int(held.getsockname()[1])
    elif port == 0:
        raise ValueError("port 0: bind a socket first and give it as listen_socket")
    public = "127.0.0.1" if host in ("0.0.0.0", "::", "") else host
    public = f"[{public}]" if ":" in public else public
    local_host = f"{public}:{port}"
    try:
        project = _read(path, kind, local_host, state_dir, parameters, api_keys, stage, region)
    except BaseException:
        if held is not None:
            held.close()
        raise
    prepared = PreparedProject(project, state_dir / GENERATED_CONFIG, listen_socket=held)
    # Functions call each other through the Lambda Invoke API the gateway answers.
    # and reach the gateway at the AWS host names they build themselves (runtimes.aws_hosts).
    project.add_environment(
        {"AWS_ENDPOINT_URL_LAMBDA": f"http://{local_host}", AWS_HOSTS_ENV: local_host}
    )
    if project.tables:
        dynamo = LocalDynamoDB(endpoint=dynamodb_endpoint, region=_region(project))
        if start_services:
            endpoint = dynamo.start()
            prepared.dynamodb = dynamo if dynamo.embedded else None
            try:
                prepared.lines += dynamo.create_tables(project.tables)
            except Exception:
                prepared.stop()
                raise
            where = "embedded (moto)" if dynamo.embedded else "given"
            prepared.lines.insert(0, f"DynamoDB: {endpoint} ({where})")
            project.add_environment(dynamo.handler_environment())
        else:
            project.add_environment(
                {
                    "AWS_ENDPOINT_URL_DYNAMODB": dynamodb_endpoint or "http://127.0.0.1:0",
                    "AWS_ACCESS_KEY_ID": TEST_CREDENTIAL,
                    "AWS_SECRET_ACCESS_KEY": TEST_CREDENTIAL,
                }
            )
    for key in project.api_keys:
        pinned = " (pinned)" if key.pinned else ""
        prepared.lines.append(f"AppSync API key {key.logical_id}: {key.key}{pinned}")

    def say(line: str) -> None:
        prepared.lines.append(line)
        if progress is not None:
            progress(line)

    found = add_dependencies(project.config, state_dir, say, install_now=start_services)
    if found and not start_services:
        prepared.lines += [f"{path}: installed at serve (not by check-config)" for path in found]
    config = dict(project.config)
    config["listen"] = f"{host}:{port}" if ":" not in host else f"[{host}]:{port}"
    config["state_dir"] = str(state_dir)
    if broker_url is not None:  # one key space per project directory
        prefix = hashlib.sha256(str(path).encode()).hexdigest()[:10]
        config["broker"] = {"url": broker_url, "key_prefix": f"sockway-project-{prefix}"}
    header = f"# Written by sockway from {path}; regenerated at every start.\n"
    prepared.config_path.write_text(header + yaml.safe_dump(config, sort_keys=False))
    return prepared


def _read(
    path: Path,
    kind: ProjectKind,
    local_host: str,
    state_dir: Path,
    parameters: tuple[str, ...],
    api_keys: tuple[str, ...],
    stage: str | None,
    region: str | None,
) -> Project:
    if kind == "template":
        return read_template(
            path,
            parameters=_parse_pairs(parameters, "--parameter"),
            api_keys=_parse_pairs(api_keys, "--api-key"),
            local_host=local_host,
            state_dir=state_dir,
            region=region or "us-east-1",
        )
    from sockway.projects.serverless import read_serverless

    return read_serverless(
        path, local_host=local_host, state_dir=state_dir, stage=stage, region=region
    )


def _region(project: Project) -> str:
    apis = project.config.get("apis") or [{}]
    return str(apis[0].get("region", "us-east-1"))
