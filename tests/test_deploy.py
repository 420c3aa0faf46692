"""deploy/: the compose stack and the Kubernetes manifests are valid YAML, and the sockway
configuration they use passes sockway's own loader (docs/deployment.md, issue 6).

No Docker daemon or cluster is needed: the files are checked for what sockway relies on — the
config file the containers load, the broker every node shares, ``--workers`` with a broker,
the load balancer's targets and its ``/ready`` check.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import yaml

from sockway.brokers.settings import workers_problem
from sockway.gateway.config import load_config, parse_config
from sockway.gateway.settings import Settings, parse_hostport

DEPLOY = Path(__file__).resolve().parent.parent / "deploy"


def _option(args: list[str], name: str) -> str:
    assert name in args, args
    return args[args.index(name) + 1]


def _check_command(args: list[str], settings: Settings) -> None:
    assert args[0] == "serve"
    workers = int(_option(args, "--workers"))
    assert workers == 2
    assert workers_problem(workers, settings.broker) is None


def _without_broker_url(settings: Settings) -> dict[str, Any]:
    dumped = settings.model_dump()
    dumped["broker"].pop("url")
    return dumped


def test_compose_stack() -> None:
    docs = list(yaml.safe_load_all((DEPLOY / "compose.yaml").read_text()))
    assert len(docs) == 1
    services = docs[0]["services"]
    assert {"redis", "sockway-1", "sockway-2", "lb"} <= set(services)
    nodes = [name for name in services if name.startswith("sockway-")]
    port = None
    for name in nodes:
        service = services[name]  # the x-sockway anchor merged in by YAML's << key
        mounts = dict(v.rsplit(":", 2)[:2] for v in service["volumes"])
        config = _option(service["command"], "--config")
        source = next(src for src, target in mounts.items() if target == config)
        settings = load_config(DEPLOY / source)
        _check_command(service["command"], settings)
        assert settings.broker is not None
        assert urlsplit(settings.broker.url).hostname == "redis"  # the compose service
        port = parse_hostport(settings.listen)[1]
        assert service["build"]["dockerfile"] == "deploy/Dockerfile"
        assert (DEPLOY.parent / service["build"]["context"].removeprefix("../")).is_dir()
    # The load balancer targets every node on the port sockway listens on, checks /ready and
    # lets upgraded WebSockets live longer than sockway's idle timeout.
    lb = services["lb"]
    cfg_source = next(v.split(":")[0] for v in lb["volumes"] if "haproxy.cfg" in v)
    haproxy = (DEPLOY / cfg_source).read_text()
    servers = re.findall(r"^\s*server (\S+) (\S+):(\d+) check", haproxy, re.M)
    assert {(name, host, int(p)) for name, host, p in servers} == {(n, n, port) for n in nodes}
    assert "option httpchk GET /ready" in haproxy
    assert re.search(r"timeout tunnel 1h", haproxy)
    assert "balance leastconn" in haproxy and "cookie" not in haproxy  # no stickiness


def test_kubernetes_manifests(tmp_path: Path) -> None:
    docs = [d for d in yaml.safe_load_all((DEPLOY / "kubernetes.yaml").read_text()) if d]
    by_kind: dict[tuple[str, str], dict[str, Any]] = {
        (d["kind"], d["metadata"]["name"]): d for d in docs
    }
    assert set(by_kind) == {
        ("ConfigMap", "sockway-config"),
        ("Deployment", "sockway-redis"),
        ("Service", "sockway-redis"),
        ("Deployment", "sockway"),
        ("Service", "sockway"),
    }
    text = by_kind["ConfigMap", "sockway-config"]["data"]["sockway.yaml"]
    settings = parse_config(yaml.safe_load(text), tmp_path)
    assert settings.broker is not None
    assert urlsplit(settings.broker.url).hostname == "sockway-redis"  # the Redis Service
    # The same gateway as deploy/sockway.yaml, only the Redis address differs.
    assert _without_broker_url(settings) == _without_broker_url(
        load_config(DEPLOY / "sockway.yaml")
    )

    pod = by_kind["Deployment", "sockway"]["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    _check_command(container["args"], settings)
    config = Path(_option(container["args"], "--config"))
    mount = next(m for m in container["volumeMounts"] if m["name"] == "config")
    assert config.parent == Path(mount["mountPath"])
    volume = next(v for v in pod["volumes"] if v["name"] == "config")
    assert volume["configMap"]["name"] == "sockway-config"
    assert config.name in by_kind["ConfigMap", "sockway-config"]["data"]
    port = parse_hostport(settings.listen)[1]
    assert container["ports"][0]["containerPort"] == port
    assert container["readinessProbe"]["httpGet"]["path"] == "/ready"
    assert container["livenessProbe"]["httpGet"]["path"] == "/health"
    assert pod["terminationGracePeriodSeconds"] > settings.shutdown_grace_s + 5
    service = by_kind["Service", "sockway"]["spec"]
    assert (
        service["selector"] == by_kind["Deployment", "sockway"]["spec"]["selector"]["matchLabels"]
    )
    assert "sessionAffinity" not in service  # sticky sessions are not needed
