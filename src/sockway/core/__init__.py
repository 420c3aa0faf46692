"""Protocol-agnostic core: connections, channels, fan-out. No sockets, no HTTP, no AWS SDK."""
