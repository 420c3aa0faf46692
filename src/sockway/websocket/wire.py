"""Byte-exact frames and strings API Gateway sends (apigw spec §2.1, §7).

Wire text lives here and only here (DESIGN habit 1).
"""

from __future__ import annotations

from sockway.core.node import GOING_AWAY_CLOSE

# §2.1: a space after "message": and after each comma, none after the other colons. Clients
# prefix-match these, keep the spacing exactly.
_ERROR_FRAME = '{{"message": "{message}", "connectionId":"{cid}", "requestId":"{rid}"}}'


def error_frame(message: str, connection_id: str, request_id: str) -> bytes:
    return _ERROR_FRAME.format(message=message, cid=connection_id, rid=request_id).encode()


def forbidden_frame(connection_id: str, request_id: str) -> bytes:
    """No route matched and there is no ``$default`` route."""
    return error_frame("Forbidden", connection_id, request_id)


def internal_error_frame(connection_id: str, request_id: str) -> bytes:
    """The integration raised, returned a malformed result, or was throttled."""
    return error_frame("Internal server error", connection_id, request_id)


def timeout_frame(connection_id: str, request_id: str) -> bytes:
    """The integration did not answer within the integration timeout (29 s by default)."""
    return error_frame("Endpoint request timed out", connection_id, request_id)


# §7: close codes and the disconnectReason strings AWS reports to $disconnect.
REASON_NO_STATUS = "Client-side close frame status not set"  # client closed without a code
REASON_DELETE = "Connection Closed Normally"  # DELETE @connections/{id}
CLOSE_GOING_AWAY, REASON_GOING_AWAY = GOING_AWAY_CLOSE  # idle timeout, max duration, shutdown
REASON_ABNORMAL = "Connection closed abnormally"  # TCP lost without a close frame [our choice]
# 1009 ("Message too big" / "Frame too big") and the other protocol closes carry the
# transport's reasons: transport/picows_ws.py [our choice; AWS text unknown].
REASON_BINARY = "Binary frames are not supported"  # [our choice; AWS text unknown]

CLOSE_NORMAL = 1000
CLOSE_UNSUPPORTED_DATA = 1003
CLOSE_NO_STATUS = 1005
CLOSE_ABNORMAL = 1006
CLOSE_MESSAGE_TOO_BIG = 1009
