"""AWS host names a handler builds itself, answered by the local gateway (issue 14).

AWS's own chat sample posts to ``https://{apiId}.execute-api.{region}.amazonaws.com/{stage}``
built from the event, and AppSync Events clients to ``{id}.appsync-api.{region}.amazonaws.com``.
When ``SOCKWAY_AWS_HOSTS`` is set (``host:port`` of the gateway; ``sockway serve --template``
sets it), a worker process resolves ``*.execute-api.*.amazonaws.com``,
``*.appsync-api.*.amazonaws.com`` and ``*.appsync-realtime-api.*.amazonaws.com`` — whatever
port was asked — to that address; the gateway's development certificate carries those names
(``tls.names``), so the ``https://`` call verifies against the bundle in ``AWS_CA_BUNDLE``.
Every other name resolves as usual. Only ``socket.getaddrinfo`` is wrapped, which the standard
library, urllib3 (boto3) and aiohttp all go through.
"""

from __future__ import annotations

import os
import re
import socket
from typing import Any

ENV = "SOCKWAY_AWS_HOSTS"
_AWS_HOST = re.compile(
    r"^[a-z0-9]+\.(?:execute-api|appsync-api|appsync-realtime-api)\.[a-z0-9-]+\.amazonaws\.com\.?$",
    re.IGNORECASE,
)


def certificate_names(region: str) -> list[str]:
    """The wildcard names the development certificate needs for ``region``."""
    return [
        f"*.{service}.{region}.amazonaws.com"
        for service in ("execute-api", "appsync-api", "appsync-realtime-api")
    ]


def redirect_aws_hosts() -> bool:
    """Wrap ``socket.getaddrinfo`` when ``SOCKWAY_AWS_HOSTS`` is set; True if it did."""
    target = os.environ.get(ENV)
    if not target:
        return False
    host, _, port = target.rpartition(":")
    host = host.strip("[]")
    original = socket.getaddrinfo

    def getaddrinfo(name: Any, service: Any, *args: Any, **kwargs: Any) -> Any:
        if isinstance(name, bytes):
            name = name.decode()
        if isinstance(name, str) and _AWS_HOST.match(name):
            return original(host, int(port), *args, **kwargs)
        return original(name, service, *args, **kwargs)

    socket.getaddrinfo = getaddrinfo  # type: ignore[assignment]
    return True
