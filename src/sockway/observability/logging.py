"""Structured logs: every record may carry ``api``, ``connection_id``, ``request_id``, ``route``.

``log_format: json`` writes one JSON object per line, its ``time`` in UTC with milliseconds and
the zone (``2026-12-02T15:43:42.123Z``); ``text`` a readable line with the same fields as
``key=value``. The access log (``sockway.access``) is written as its own format renders it,
without this prefix.
"""

from __future__ import annotations

import logging
import sys
import time
from typing import Any

import orjson
from aiohttp.http_exceptions import HttpProcessingError

from sockway.observability.access_log import ACCESS_LOGGER

FIELDS = ("api", "connection_id", "request_id", "route", "status")


def iso_time(epoch_s: float) -> str:
    """UTC, milliseconds, zone: ``2026-12-02T15:43:42.123Z`` (what Lambda's logs show)."""
    ms = int(epoch_s * 1000) % 1000
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(epoch_s)) + f".{ms:03d}Z"


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        out: dict[str, Any] = {
            "time": iso_time(record.created),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        for name in FIELDS:
            value = getattr(record, name, None)
            if value is not None:
                out[name] = value
        if record.exc_info:
            out["exception"] = self.formatException(record.exc_info)
        return orjson.dumps(out, default=str).decode()


class TextFormatter(logging.Formatter):
    def __init__(self) -> None:
        super().__init__("%(asctime)s %(levelname)-7s %(name)s: %(message)s")

    def format(self, record: logging.LogRecord) -> str:
        line = super().format(record)
        extras = [f"{n}={getattr(record, n)}" for n in FIELDS if getattr(record, n, None)]
        if extras:
            first, nl, rest = line.partition("\n")
            line = first + " [" + " ".join(extras) + "]" + nl + rest
        return line


class PeerRequestErrors(logging.Filter):
    """aiohttp logs a malformed client request ("Error handling request", a ``BadHttpMessage``)
    at ERROR with its whole traceback. It is the peer's fault, not our bug (DESIGN habit 3):
    the record becomes one INFO line naming the peer and aiohttp's reason, or is dropped when
    INFO is not enabled. Other errors are left as they are."""

    def filter(self, record: logging.LogRecord) -> bool:
        exc = record.exc_info[1] if record.exc_info else None
        if not isinstance(exc, HttpProcessingError) or not str(record.msg).startswith(
            "Error handling request"
        ):
            return True
        if not logging.getLogger(record.name).isEnabledFor(logging.INFO):
            return False
        peer = record.args[0] if isinstance(record.args, tuple) and record.args else "?"
        reason = (exc.message or type(exc).__name__).strip().splitlines()[0][:200]
        record.levelno, record.levelname = logging.INFO, "INFO"
        record.msg, record.args = (
            "malformed HTTP request from %s: %d %s",
            (
                peer,
                exc.code,
                reason,
            ),
        )
        record.exc_info, record.exc_text, record.stack_info = None, None, None
        return True


_PEER_ERRORS = PeerRequestErrors()


def quiet_peer_request_errors() -> None:
    """Install ``PeerRequestErrors`` on aiohttp's server logger (idempotent)."""
    server = logging.getLogger("aiohttp.server")
    if _PEER_ERRORS not in server.filters:
        server.addFilter(_PEER_ERRORS)


def setup_logging(fmt: str, level: str) -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter() if fmt == "json" else TextFormatter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    access = logging.getLogger(ACCESS_LOGGER)
    access_handler = logging.StreamHandler(sys.stderr)
    access_handler.setFormatter(logging.Formatter("%(message)s"))
    access.handlers[:] = [access_handler]
    access.propagate = False
    logging.getLogger("aiohttp.access").setLevel(logging.WARNING)
    logging.getLogger("botocore").setLevel(logging.WARNING)
    quiet_peer_request_errors()
