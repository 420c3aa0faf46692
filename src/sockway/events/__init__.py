"""The AppSync Events-compatible API (``type: events``; shared/specs/appsync-events.md).

Pure modules (no sockets, no HTTP): ``settings``, ``wire``, ``handler_events``. The rest drives
connections and requests: ``auth`` / ``auth_jwt`` (the auth modes), ``runtime`` (publish and
subscribe), ``realtime`` (the WebSocket subprotocol), ``publish_http`` (HTTP publish),
``cluster`` (wildcards across nodes) and ``door`` (the front door the gateway builds)."""
