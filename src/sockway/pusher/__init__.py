"""The Pusher-protocol app (``type: pusher``; shared/specs/pusher.md), as soketi offers it.

Pure modules (no sockets, no HTTP): ``settings``, ``wire``, ``channels``, ``signatures``. The rest
drives sockets and requests: ``state`` (an app's sockets, channels, users, cache), ``session``
(one socket's frames), ``membership`` (presence), ``webhooks`` / ``webhook_targets``,
``http_api``, ``cluster`` and ``door`` (the front door the gateway builds)."""
