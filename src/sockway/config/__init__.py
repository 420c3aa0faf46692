"""Settings models, the YAML loader and readable validation errors."""

from sockway.config.loader import ConfigError, load_config, parse_config
from sockway.config.models import Settings, WebSocketApi

__all__ = ["ConfigError", "Settings", "WebSocketApi", "load_config", "parse_config"]
