"""Handler runtimes behind one interface (``runtimes.base.Integration``): in-process,
worker processes, HTTP endpoints and AWS Lambda, and the settings they are built from."""
