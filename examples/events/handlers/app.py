"""onPublish / onSubscribe for the `chat` namespace, written for AWS Lambda with Powertools.

The same file deploys unchanged as a direct Lambda data source of an AppSync Events API.
"""

from __future__ import annotations

import re
from typing import Any

from aws_lambda_powertools.event_handler import AppSyncEventsResolver
from aws_lambda_powertools.event_handler.events_appsync.exceptions import UnauthorizedException

app = AppSyncEventsResolver()

MAX_TEXT = 280
BLOCKED = re.compile(r"\b(darn|heck)\b", re.IGNORECASE)


@app.on_publish("/chat/*")
def clean_message(payload: dict[str, Any]) -> dict[str, Any]:
    """Each message needs a non-empty ``text`` of at most 280 characters; blocked words are
    masked. A ``ValueError`` fails only that event (reported in the publish response)."""
    text = str(payload.get("text", "")).strip()
    if not text:
        raise ValueError("text is required")
    if len(text) > MAX_TEXT:
        raise ValueError(f"text is longer than {MAX_TEXT} characters")
    return {**payload, "text": BLOCKED.sub(lambda m: "*" * len(m.group()), text)}


@app.on_subscribe("/chat/private/*")
def private_rooms() -> None:
    raise UnauthorizedException("private rooms are closed")


@app.on_subscribe("/chat/*")
def public_rooms() -> None:
    return None  # everyone may join the other rooms


def handler(event: dict[str, Any], context: Any) -> Any:
    return app.resolve(event, context)
