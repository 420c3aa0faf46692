"""sockway: a self-hosted, serverless-style WebSocket gateway.

Clients connect over WebSocket; the gateway holds the connections and calls stateless
handlers (Lambda-style ``handler(event, context)`` functions) for their lifecycle and
messages. See README.md for the tutorial and the configuration reference.
"""

__version__ = "0.1.0"
