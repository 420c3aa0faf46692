"""The only socket code: listeners, the WebSocket driver, and the gateway assembly."""
