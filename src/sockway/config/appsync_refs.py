"""Where a raw ``type: events`` API keeps handler references (for ``config.loader``)."""

from __future__ import annotations

from typing import Any

from sockway.config.models import handler_runtime

# The auth provider ``type`` tags (pydantic puts them into error locations; not config keys).
EVENTS_AUTH_TYPES = (
    "API_KEY",
    "AWS_LAMBDA",
    "OPENID_CONNECT",
    "AMAZON_COGNITO_USER_POOLS",
    "AWS_IAM",
)


def events_handler_refs(i: int, api: dict[str, Any]) -> list[tuple[str, str, str]]:
    """(key path, reference, runtime) of the Lambda authorizer and every namespace handler."""
    refs: list[tuple[str, str, str]] = []
    providers = api.get("auth_providers")
    if isinstance(providers, list):
        for j, provider in enumerate(providers):
            if isinstance(provider, dict) and provider.get("type") == "AWS_LAMBDA":
                handler = provider.get("handler")
                if isinstance(handler, str):
                    loc = f"apis[{i}].auth_providers[{j}].handler"
                    refs.append((loc, handler, handler_runtime(api, provider)))
    namespaces = api.get("namespaces")
    if isinstance(namespaces, dict):
        for name, ns in namespaces.items():
            if not isinstance(ns, dict):
                continue
            for slot in ("on_publish", "on_subscribe"):
                spec = ns.get(slot)
                handler = spec.get("handler") if isinstance(spec, dict) else spec
                if isinstance(handler, str):
                    loc = f"apis[{i}].namespaces.{name}.{slot}"
                    refs.append((loc, handler, handler_runtime(api, spec)))
    return refs
