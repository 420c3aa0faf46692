"""HTTP APIs served next to the WebSockets: @connections management and operations."""
