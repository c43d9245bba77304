"""The one error type a user sees for bad input: a single line, raised before training."""

import sys
from typing import NoReturn

USAGE_ERROR = 2


class ConfigError(ValueError):
    """Bad user input: the message names the bad value and what would be accepted."""


def exit_with(error: Exception) -> NoReturn:
    print(f"freeze-sweep: error: {error}", file=sys.stderr)
    sys.exit(USAGE_ERROR)
