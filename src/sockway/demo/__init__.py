"""The embedded demo served by ``sockway serve`` without a configuration file."""
