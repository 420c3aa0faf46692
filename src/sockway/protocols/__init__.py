"""Wire protocols: pure functions and data, no sockets (DESIGN: thin edges)."""
