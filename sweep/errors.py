"""The one error type a user sees for bad input: a single line, raised before training."""


class ConfigError(ValueError):
    """Bad user input: the message names the bad value and what would be accepted."""
