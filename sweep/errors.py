"""The one error type a user sees for bad input: a single line, raised before training."""

import sys
from typing import NoReturn

from sweep.tracking.credentials import redact

USAGE_ERROR = 2


class ConfigError(ValueError):
    """Bad user input: the message names the bad value and what would be accepted."""


def exit_with(error: Exception) -> NoReturn:
    """One line, whatever the message holds (a library's multi-line error), credentials redacted."""
    line = " ".join(part.strip() for part in str(error).splitlines() if part.strip())
    print(f"freeze-sweep: error: {redact(line)}", file=sys.stderr)
    sys.exit(USAGE_ERROR)
