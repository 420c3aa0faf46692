"""The API Gateway WebSocket-compatible API (``type: websocket``; shared/specs/apigw-websocket.md).

Pure modules (no sockets, no HTTP): ``settings``, ``events``, ``routing``, ``wire``,
``authorizer``. The rest drives connections: ``runtime``, ``handshake``, ``management``
(@connections / @channels) and ``door`` (the front door the gateway builds)."""
