"""The WebSocket transport: the listener, its first-request sniffer, the picows and aiohttp
drivers, the frame guard, the upgrade-head parser and TLS. The only code that touches sockets;
it knows no API type."""
