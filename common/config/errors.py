"""The one exception type for configuration mistakes a user can make."""


class ConfigError(ValueError):
    """A bad config key or value; the message names the key and the fix."""
