"""A tracking URI's credentials never reach a file, a tag or the console.

MLflow authenticates with `MLFLOW_TRACKING_USERNAME` / `MLFLOW_TRACKING_PASSWORD`; a URI given as
`http://user:pw@host` is split into those variables and a clean URI before Hydra sees it, and
any text the tool writes goes through `redact` in case a config file held one.
"""

from __future__ import annotations

import os
import re
from urllib.parse import urlsplit, urlunsplit

USER_ENV = "MLFLOW_TRACKING_USERNAME"
PASSWORD_ENV = "MLFLOW_TRACKING_PASSWORD"
USERINFO = re.compile(r"(?P<scheme>[a-zA-Z][a-zA-Z0-9+.-]*://)(?P<user>[^/@:\s]*)(?::[^/@\s]*)?@")
URI_KEYS = ("tracking.uri=", "+tracking.uri=", "++tracking.uri=")


def redact(text: str) -> str:
    """`http://user:pw@host` -> `http://user:***@host`, wherever it appears in `text`."""
    return USERINFO.sub(lambda m: f"{m['scheme']}{m['user']}:***@", text)


def without_credentials(uri: str) -> str:
    """The URI with its credentials moved into MLflow's environment variables (unless already set)."""
    parts = urlsplit(uri)
    if not parts.scheme.startswith("http") or "@" not in parts.netloc:
        return uri
    userinfo, host = parts.netloc.rsplit("@", 1)
    user, _, password = userinfo.partition(":")
    if user:
        os.environ.setdefault(USER_ENV, user)
    if password:
        os.environ.setdefault(PASSWORD_ENV, password)
    return urlunsplit(parts._replace(netloc=host))


def scrub_argv(argv: list[str]) -> list[str]:
    """Command-line overrides with any tracking URI's credentials moved to the environment, so
    Hydra's saved configs, overrides and the sweep's tags never hold them."""
    scrubbed = []
    for arg in argv:
        key = next((k for k in URI_KEYS if arg.startswith(k)), None)
        if key:
            arg = key + without_credentials(arg[len(key) :])
        scrubbed.append(arg)
    return scrubbed
