"""Handler runtimes behind one interface (``integrations.base.Integration``)."""
