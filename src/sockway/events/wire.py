"""AppSync Events WebSocket frames and error types (appsync-events spec §2.2, §2.3, §2.6, §5).

Wire field names live only here. Every builder returns the JSON bytes of one text frame.
"""

from __future__ import annotations

import re
from typing import Any

import orjson

SUBPROTOCOL = "aws-appsync-event-ws"
HEADER_PREFIX = "header-"
_OPERATION_ID = re.compile(r"^[a-zA-Z0-9\-_+]{1,128}$")

# errorType strings (spec §2.6 and §5's mapping).
UNAUTHORIZED = "UnauthorizedException"
BAD_REQUEST = "BadRequestException"
INVALID_INPUT = "InvalidInputError"
UNSUPPORTED = "UnsupportedOperation"
DUPLICATED = "DuplicatedOperationError"
UNKNOWN_OPERATION = "UnknownOperationError"
MAX_SUBSCRIPTIONS = "MaxSubscriptionsReachedError"
LIMIT_EXCEEDED = "LimitExceededError"
HANDLER_ERROR = "HandlerExecutionError"
SUBSCRIPTION_ERROR = "SubscriptionProcessingError"
NOT_FOUND = "ResourceNotFound"
MESSAGE_ERROR = "MessageProcessingError"
SERVICE_UNAVAILABLE = "ServiceUnavailableException"  # draining, or the cluster broker is down

_STATUS = {"UnauthorizedException": 401, "HandlerExecutionError": 500}

NOT_AUTHORIZED_MESSAGE = "You are not authorized to make this call."


class EventsError(Exception):
    """An operation failed with this errorType; the frame's ``errors[0]``.

    ``status`` is the HTTP publish status (spec §1.4); by default derived from the errorType.
    """

    def __init__(self, error_type: str, message: str, status: int | None = None) -> None:
        super().__init__(f"{error_type}: {message}")
        self.error_type = error_type
        self.message = message
        self.status = status or _STATUS.get(error_type, 400)

    def as_dict(self) -> dict[str, str]:
        return {"errorType": self.error_type, "message": self.message}


def internal_failure() -> EventsError:
    """Our bug, not the client's (logged with its traceback where it happened)."""
    return EventsError("InternalFailureException", "An internal error occurred", status=500)


def unauthorized() -> EventsError:
    return EventsError(UNAUTHORIZED, NOT_AUTHORIZED_MESSAGE)


def valid_operation_id(value: object) -> bool:
    """``id`` rule of spec §2.2: ``^[a-zA-Z0-9-_+]{1,128}$``."""
    return isinstance(value, str) and _OPERATION_ID.match(value) is not None


def _dump(frame: dict[str, Any]) -> bytes:
    return orjson.dumps(frame)


def connection_ack(connection_timeout_ms: int) -> bytes:
    return _dump({"type": "connection_ack", "connectionTimeoutMs": connection_timeout_ms})


KA = b'{"type":"ka"}'


def success(kind: str, op_id: str) -> bytes:
    """``subscribe_success`` / ``unsubscribe_success``."""
    return _dump({"type": kind, "id": op_id})


def failure(kind: str, op_id: str | None, error: EventsError) -> bytes:
    """``subscribe_error``, ``unsubscribe_error``, ``publish_error``, ``error``, ...

    ``id`` is included whenever known (Swift drops an ``error`` frame without it, spec §2.3).
    """
    frame: dict[str, Any] = {"type": kind}
    if op_id is not None:
        frame["id"] = op_id
    frame["errors"] = [error.as_dict()]
    return _dump(frame)


def connection_error(error: EventsError) -> bytes:
    return _dump({"type": "connection_error", "errors": [error.as_dict()]})


def publish_result(
    op_id: str | None, successful: list[dict[str, Any]], failed: list[dict[str, Any]]
) -> dict[str, Any]:
    """The ``successful`` / ``failed`` lists, as HTTP publish returns them (spec §1.4)."""
    body: dict[str, Any] = {"failed": failed, "successful": successful}
    if op_id is not None:
        return {"id": op_id, "type": "publish_success", **body}
    return body


def encode_event(event_json: str) -> bytes:
    """An event's JSON text encoded as a JSON string, once per publication (DESIGN habit 5)."""
    return orjson.dumps(event_json)


def data_frame(sub_id: str, encoded_event: bytes) -> bytes:
    """``{"type":"data","id":..,"event":"<json string>"}`` (spec §2.3: a string, never a list).

    ``sub_id`` passed ``valid_operation_id``, so it needs no escaping.
    """
    return data_frame_head(sub_id) + encoded_event + b"}"


def data_frame_head(sub_id: str) -> bytes:
    """The part of a subscription's data frames before the event, built once per subscription."""
    return b'{"type":"data","id":"' + sub_id.encode() + b'","event":'


def broadcast_error(sub_id: str) -> bytes:
    """An event could not be delivered to this subscription (spec §2.3 ``broadcast_error``)."""
    error = EventsError(MESSAGE_ERROR, "There was an error processing the message")
    return failure("broadcast_error", sub_id, error)
