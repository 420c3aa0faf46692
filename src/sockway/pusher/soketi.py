"""Reading a soketi 1.x configuration as it is (issue 17; pusher spec §5.2-§5.4).

soketi reads a JSON file (``--config``) whose top-level keys are option paths, written either
nested (``{"appManager": {"array": {"apps": [...]}}}``) or dotted (``{"appManager.array.apps":
[...]}``), and then ``SOKETI_<NAME>`` environment variables (a JSON value is parsed), which win.
``soketi_settings`` turns that into the document of a sockway configuration with soketi's
defaults where sockway's differ (so an app behaves as it did under soketi), and says what it
did not carry over:

- ``problems``: options whose effect sockway cannot give, so starting would silently change
  what clients see (``pathPrefix``, an app manager other than ``array``, ...): the caller
  refuses to start;
- ``notes``: options that have no effect here, or are served differently (printed at start).

Pure: no file or environment access (the caller passes both in). README "Migrating from
soketi" lists every option and what happens to it.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import orjson

from sockway.pusher.soketi_defaults import DEFAULTS, ENV_OPTIONS

# Option trees soketi has that have no meaning for sockway: noted when set, never an error.
_NOT_APPLICABLE = {
    "adapter.cluster": "sockway nodes find each other through the broker (redis)",
    "adapter.redis.requestsTimeout": "sockway keeps cluster state in Redis: no request timeouts",
    "adapter.redis.redisPubOptions": "use the broker url",
    "adapter.redis.redisSubOptions": "use the broker url",
    "adapter.nats": "only the redis adapter has a sockway counterpart",
    "appManager.cache": "apps are read once at start",
    "appManager.dynamodb": "only the array app manager is read",
    "appManager.mysql": "only the array app manager is read",
    "appManager.postgres": "only the array app manager is read",
    "cache": "cache channels are kept in memory by every node",
    "cluster": "sockway nodes find each other through the broker (redis)",
    "cors": "CORS headers are fixed (soketi's defaults: any origin)",
    "database.mysql": "only the array app manager is read",
    "database.postgres": "only the array app manager is read",
    "databasePooling": "only the array app manager is read",
    "httpApi.acceptTraffic": "sockway has /ready and /health, no /accept-traffic",
    "instance": "each node has its own id",
    "metrics": "Prometheus metrics are served at /metrics on the main port",
    "mode": "every sockway node serves clients and delivers webhooks",
    "queue": "webhooks are delivered by each node with retries for 5 minutes (no queue)",
    "rateLimiter": "rate limits are counted per node",
}

_APP_KEYS: dict[str, tuple[tuple[str, ...], str | None]] = {
    # sockway key: (soketi spellings: camelCase, PascalCase, snake_case), server-wide default
    "app_id": (("id", "AppId"), None),
    "key": (("key", "AppKey"), None),
    "secret": (("secret", "AppSecret"), None),
    "max_connections": (("maxConnections", "MaxConnections", "max_connections"), None),
    "enable_client_messages": (
        ("enableClientMessages", "EnableClientMessages", "enable_client_messages"),
        None,
    ),
    "enabled": (("enabled", "Enabled"), None),
    "max_backend_events_per_sec": (
        ("maxBackendEventsPerSecond", "MaxBackendEventsPerSecond", "max_backend_events_per_sec"),
        None,
    ),
    "max_client_events_per_sec": (
        ("maxClientEventsPerSecond", "MaxClientEventsPerSecond", "max_client_events_per_sec"),
        None,
    ),
    "max_read_req_per_sec": (
        ("maxReadRequestsPerSecond", "MaxReadRequestsPerSecond", "max_read_req_per_sec"),
        None,
    ),
    "max_presence_members_per_channel": (
        (
            "maxPresenceMembersPerChannel",
            "MaxPresenceMembersPerChannel",
            "max_presence_members_per_channel",
        ),
        "presence.maxMembersPerChannel",
    ),
    "max_presence_member_size_in_kb": (
        (
            "maxPresenceMemberSizeInKb",
            "MaxPresenceMemberSizeInKb",
            "max_presence_member_size_in_kb",
        ),
        "presence.maxMemberSizeInKb",
    ),
    "max_channel_name_length": (
        ("maxChannelNameLength", "MaxChannelNameLength", "max_channel_name_length"),
        "channelLimits.maxNameLength",
    ),
    "max_event_channels_at_once": (
        ("maxEventChannelsAtOnce", "MaxEventChannelsAtOnce", "max_event_channels_at_once"),
        "eventLimits.maxChannelsAtOnce",
    ),
    "max_event_name_length": (
        ("maxEventNameLength", "MaxEventNameLength", "max_event_name_length"),
        "eventLimits.maxNameLength",
    ),
    "max_event_payload_in_kb": (
        ("maxEventPayloadInKb", "MaxEventPayloadInKb", "max_event_payload_in_kb"),
        "eventLimits.maxPayloadInKb",
    ),
    "max_event_batch_size": (
        ("maxEventBatchSize", "MaxEventBatchSize", "max_event_batch_size"),
        "eventLimits.maxBatchSize",
    ),
    "enable_user_authentication": (
        ("enableUserAuthentication", "EnableUserAuthentication", "enable_user_authentication"),
        None,
    ),
}
_INT_KEYS = {
    "max_connections",
    "max_backend_events_per_sec",
    "max_client_events_per_sec",
    "max_read_req_per_sec",
    "max_presence_members_per_channel",
    "max_channel_name_length",
    "max_event_channels_at_once",
    "max_event_name_length",
    "max_event_batch_size",
}
_FLOAT_KEYS = {"max_presence_member_size_in_kb", "max_event_payload_in_kb"}
_BOOL_KEYS = {"enable_client_messages", "enabled", "enable_user_authentication"}


@dataclass
class SoketiSettings:
    """What ``soketi_settings`` made of a soketi configuration."""

    document: dict[str, Any]  # a sockway configuration document (``parse_config``)
    problems: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)


def set_option(options: dict[str, Any], path: str, value: Any) -> None:
    """Set ``path`` (``a.b.0.c``) as soketi's ``dot.set`` does: a list index is a number; an
    object written at a path is merged into what is there (soketi replaces it, which drops
    its defaults: ``{"appManager": {"array": ...}}`` would lose ``appManager.driver``)."""
    parts = path.split(".")
    node: Any = options
    for i, part in enumerate(parts):
        last = i == len(parts) - 1
        if isinstance(node, list) and part.isdigit():
            index = int(part)
            while len(node) <= index:
                node.append({})
            if last:
                node[index] = _merged(node[index], value)
            else:
                if not isinstance(node[index], dict | list):
                    node[index] = {}
                node = node[index]
            continue
        if not isinstance(node, dict):
            return  # a path through a scalar: soketi would fail as well; ignored
        if last:
            node[part] = _merged(node.get(part), value)
        else:
            if not isinstance(node.get(part), dict | list):
                node[part] = {}
            node = node[part]


def _merged(old: Any, new: Any) -> Any:
    if isinstance(old, dict) and isinstance(new, dict):
        out = dict(old)
        for k, v in new.items():
            out[k] = _merged(out.get(k), v)
        return out
    return copy.deepcopy(new)


def get_option(options: Mapping[str, Any], path: str, default: Any = None) -> Any:
    node: Any = options
    for part in path.split("."):
        if isinstance(node, list) and part.isdigit() and int(part) < len(node):
            node = node[int(part)]
        elif isinstance(node, Mapping) and part in node:
            node = node[part]
        else:
            return default
    return node


def soketi_options(file_doc: Mapping[str, Any], env: Mapping[str, str]) -> dict[str, Any]:
    """soketi's defaults, then the file's keys in order, then the ``SOKETI_*`` variables
    (soketi's ``Cli.start`` order); JSON in a variable's value is parsed."""
    options = copy.deepcopy(DEFAULTS)
    for path, value in file_doc.items():
        set_option(options, path, value)
    for name, path in ENV_OPTIONS.items():
        raw = env.get(f"SOKETI_{name}")
        if raw is None or raw == "":
            continue
        try:
            parsed: Any = orjson.loads(raw)
        except orjson.JSONDecodeError:
            parsed = raw
        set_option(options, path, parsed)
    return options


def soketi_settings(file_doc: Mapping[str, Any], env: Mapping[str, str]) -> SoketiSettings:
    """A sockway configuration document for a soketi configuration (see the module doc)."""
    o = soketi_options(file_doc, env)
    out = SoketiSettings({})
    doc = out.document
    doc["listen"] = f"{_host(o.get('host'))}:{_int(o.get('port'), 6001)}"
    doc["log_level"] = "DEBUG" if _bool(o.get("debug")) else "INFO"
    doc["shutdown_grace_s"] = _int(o.get("shutdownGracePeriod"), 3000) / 1000
    _tls(o, out)
    _broker(o, out)
    if get_option(o, "pathPrefix"):
        out.problems.append(
            "pathPrefix: not supported (clients must connect to /app/{key} and the HTTP API "
            "is at /apps/{id}); put a reverse proxy in front to strip the prefix"
        )
    driver = get_option(o, "appManager.driver", "array")
    if driver != "array":
        out.problems.append(
            f"appManager.driver: '{driver}' is not supported: list the apps in "
            "appManager.array.apps (or SOKETI_DEFAULT_APP_*)"
        )
    apps = get_option(o, "appManager.array.apps", [])
    if not isinstance(apps, list) or not apps:
        out.problems.append("appManager.array.apps: no app is defined")
        apps = []
    doc["apis"] = [_app(i, app, o, out) for i, app in enumerate(apps) if isinstance(app, Mapping)]
    user_set = file_doc_options(file_doc, env)
    for path, why in _NOT_APPLICABLE.items():
        if get_option(user_set, path) not in (None, {}, [], "", False):
            out.notes.append(f"{path}: not used ({why})")
    return out


def file_doc_options(file_doc: Mapping[str, Any], env: Mapping[str, str]) -> dict[str, Any]:
    """Only what the user set (file and environment), without soketi's defaults."""
    options: dict[str, Any] = {}
    for path, value in file_doc.items():
        set_option(options, path, value)
    for name, path in ENV_OPTIONS.items():
        raw = env.get(f"SOKETI_{name}")
        if raw:
            set_option(options, path, raw)
    return options


def _app(i: int, app: Mapping[str, Any], o: dict[str, Any], out: SoketiSettings) -> dict[str, Any]:
    where = f"appManager.array.apps[{i}]"
    api: dict[str, Any] = {"type": "pusher"}
    for key, (spellings, server_default) in _APP_KEYS.items():
        value = next((app[s] for s in spellings if app.get(s) not in (None, "")), None)
        if value is None and server_default is not None:
            value = get_option(o, server_default)
        if value is None:
            continue
        if key in _INT_KEYS:
            value = _int(value, value)
        elif key in _FLOAT_KEYS:
            value = _float(value)
        elif key in _BOOL_KEYS:
            value = _bool(value)
        elif key == "app_id" and isinstance(value, int | float) and not isinstance(value, bool):
            value = str(int(value))  # soketi turns numeric ids into strings
        api[key] = value
    api["name"] = _name(str(api.get("app_id", i)), i)
    # soketi's behaviour where sockway's defaults follow Pusher (README "Pusher apps").
    api.setdefault("max_client_events_per_sec", -1)
    api["activity_timeout_s"] = 30
    api["channel_info_counts"] = "always"
    api["webhook_client_event_data"] = "object"
    api["user_authentication_timeout_s"] = _int(o.get("userAuthenticationTimeout"), 30000) / 1000
    api["cache_ttl_s"] = _float(get_option(o, "channelLimits.cacheTtl", 3600))
    api["max_http_request_mb"] = _float(get_option(o, "httpApi.requestLimitInMb", 100))
    webhooks = app.get("webhooks", app.get("Webhooks", []))
    if isinstance(webhooks, str):  # DynamoDB / SQL rows keep them as a JSON string
        try:
            webhooks = orjson.loads(webhooks)
        except orjson.JSONDecodeError:
            out.problems.append(f"{where}.webhooks: not valid JSON")
            webhooks = []
    api["webhooks"] = [
        _webhook(f"{where}.webhooks[{j}]", w, out)
        for j, w in enumerate(webhooks if isinstance(webhooks, list) else [])
        if isinstance(w, Mapping)
    ]
    if _bool(get_option(o, "webhooks.batching.enabled")):
        duration = _float(get_option(o, "webhooks.batching.duration", 50))
        api["webhook_delivery"] = {"batch_window_ms": duration}
    known = {s for spellings, _ in _APP_KEYS.values() for s in spellings} | {
        "webhooks",
        "Webhooks",
    }
    for extra in sorted(set(app) - known):
        out.notes.append(f"{where}.{extra}: not a soketi app setting; ignored")
    return api


def _webhook(where: str, hook: Mapping[str, Any], out: SoketiSettings) -> dict[str, Any]:
    spec: dict[str, Any] = {}
    for key in ("url", "lambda_function", "event_types", "headers", "filter"):
        if hook.get(key) is not None:
            spec[key] = copy.deepcopy(hook[key])
    lam = hook.get("lambda")
    if isinstance(lam, Mapping):
        target: dict[str, Any] = {}
        if "async" in lam:
            target["async"] = _bool(lam["async"])
        if lam.get("region"):
            target["region"] = lam["region"]
        options = lam.get("client_options")
        if isinstance(options, Mapping):
            if options.get("endpoint"):
                target["endpoint_url"] = options["endpoint"]
            credentials = options.get("credentials")
            if isinstance(credentials, Mapping):
                if credentials.get("accessKeyId"):
                    target["access_key_id"] = credentials["accessKeyId"]
                if credentials.get("secretAccessKey"):
                    target["secret_access_key"] = credentials["secretAccessKey"]
            for extra in sorted(set(options) - {"endpoint", "credentials", "region"}):
                out.notes.append(f"{where}.lambda.client_options.{extra}: ignored")
            if options.get("region") and "region" not in target:
                target["region"] = options["region"]
        spec["lambda"] = target
    if hook.get("region") and "lambda" not in spec:
        spec["region"] = hook["region"]
    return spec


def _tls(o: dict[str, Any], out: SoketiSettings) -> None:
    cert, key = get_option(o, "ssl.certPath"), get_option(o, "ssl.keyPath")
    if not cert and not key:
        return
    if not (cert and key):
        out.problems.append("ssl: certPath and keyPath are needed together")
        return
    if get_option(o, "ssl.passphrase"):
        out.problems.append("ssl.passphrase: encrypted keys are not supported; decrypt the key")
    if get_option(o, "ssl.caPath"):
        out.notes.append("ssl.caPath: not used (append the chain to the certificate file)")
    out.document["tls"] = {"certificate": str(cert), "key": str(key)}


def _broker(o: dict[str, Any], out: SoketiSettings) -> None:
    driver = get_option(o, "adapter.driver", "local")
    if driver == "local":
        return
    if driver != "redis":
        out.problems.append(
            f"adapter.driver: '{driver}' is not supported; use 'redis' (or 'local' for one process)"
        )
        return
    r = get_option(o, "database.redis", {})
    if get_option(o, "adapter.redis.clusterMode") or r.get("clusterNodes"):
        out.problems.append(
            "adapter.redis.clusterMode / database.redis.clusterNodes: write the Redis Cluster "
            "as a sockway 'broker.url' (any node)"
        )
        return
    auth = ""
    if r.get("password"):
        auth = f"{r.get('username') or ''}:{r['password']}@"
    url = f"redis://{auth}{r.get('host') or '127.0.0.1'}:{_int(r.get('port'), 6379)}"
    url += f"/{_int(r.get('db'), 0)}"
    broker: dict[str, Any] = {"url": url}
    prefix = get_option(o, "adapter.redis.prefix") or r.get("keyPrefix")
    if prefix:
        broker["key_prefix"] = str(prefix).rstrip(":#") or "sockway"
    sentinels = r.get("sentinels")
    if sentinels:
        first = sentinels[0] if isinstance(sentinels, list) and sentinels else {}
        if isinstance(first, Mapping):
            broker["url"] = f"redis://{first.get('host', '127.0.0.1')}:{first.get('port', 26379)}"
            broker["sentinel_master"] = r.get("name") or "mymaster"
    out.document["broker"] = broker


def _name(app_id: str, i: int) -> str:
    cleaned = "".join(c if c.isalnum() or c in "-_" else "-" for c in app_id)[:64]
    return cleaned or f"app-{i}"


def _host(value: Any) -> str:
    host = str(value or "0.0.0.0")
    return f"[{host}]" if ":" in host else host


def _int(value: Any, default: Any) -> Any:
    try:
        return int(str(value))
    except (TypeError, ValueError):
        return default


def _float(value: Any) -> Any:
    try:
        return float(str(value))
    except (TypeError, ValueError):
        return value


def _bool(value: Any) -> bool:
    if isinstance(value, str):
        return value.strip().lower() in ("1", "true", "yes", "on")
    return bool(value)
