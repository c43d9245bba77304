"""A tracking URI's credentials never reach a file, a tag, a param or the console.

MLflow authenticates with `MLFLOW_TRACKING_USERNAME` / `MLFLOW_TRACKING_PASSWORD` (or
`MLFLOW_TRACKING_TOKEN`); a URI given as `http://user:pw@host`, on the command line (quoted or
not) or in `MLFLOW_TRACKING_URI`, is split into those variables and a clean URI before Hydra sees
it. `redact` is the one door every text the tool writes or prints goes through: it hides URI
userinfo, secret-looking query parameters (`?token=...`) and the values of the credential
variables, whatever form they take. `install_log_redaction` puts it in front of every log record
of the process (Hydra's launcher prints each job's overrides).
"""

from __future__ import annotations

import logging
import os
import re
from urllib.parse import urlsplit, urlunsplit

USER_ENV = "MLFLOW_TRACKING_USERNAME"
PASSWORD_ENV = "MLFLOW_TRACKING_PASSWORD"
SECRET_ENVS = (PASSWORD_ENV, "MLFLOW_TRACKING_TOKEN")
URI_ENV = "MLFLOW_TRACKING_URI"
HIDDEN = "***"
USERINFO = re.compile(r"(?P<scheme>[a-zA-Z][a-zA-Z0-9+.-]*://)(?P<user>[^/@:\s'\"]*)(?::[^/@\s'\"]*)?@")
SECRET_QUERY = re.compile(
    r"(?P<key>[?&;][^=&;#\s'\"]*(?:token|passw|pwd|secret|key|auth|sig|credential)[^=&;#\s'\"]*=)[^&;#\s'\"]*",
    re.IGNORECASE,
)
URI_KEYS = ("tracking.uri=", "+tracking.uri=", "++tracking.uri=")
MIN_SECRET_LEN = 4  # shorter values would hide ordinary text; they are still moved out of URIs


def redact(text: str) -> str:
    """`http://user:pw@host/?token=t` -> `http://user:***@host/?token=***`, and any known secret
    value -> `***`, wherever they appear in `text`."""
    text = USERINFO.sub(lambda m: f"{m['scheme']}{m['user']}:{HIDDEN}@", str(text))
    text = SECRET_QUERY.sub(lambda m: f"{m['key']}{HIDDEN}", text)
    for secret in _known_secrets():
        text = text.replace(secret, HIDDEN)
    return text


def _known_secrets() -> list[str]:
    values = [os.environ.get(name, "") for name in SECRET_ENVS]
    return [value for value in values if len(value) >= MIN_SECRET_LEN]


def without_credentials(uri: str) -> str:
    """The URI with its userinfo moved into MLflow's environment variables: given with this URI,
    they win over any already set (a stale login in the shell must not turn them into a 401)."""
    parts = urlsplit(uri)
    if not parts.scheme.startswith("http") or "@" not in parts.netloc:
        return uri
    userinfo, host = parts.netloc.rsplit("@", 1)
    user, _, password = userinfo.partition(":")
    if user:
        os.environ[USER_ENV] = user
    if password:
        os.environ[PASSWORD_ENV] = password
    return urlunsplit(parts._replace(netloc=host))


def scrub_argv(argv: list[str]) -> list[str]:
    """Command-line overrides with any tracking URI's credentials moved to the environment, so
    Hydra's saved configs, overrides, launch lines and the sweep's tags never hold them. A quoted
    value (`tracking.uri='http://user:pw@host'`) keeps its quotes."""
    scrubbed = []
    for arg in argv:
        key = next((k for k in URI_KEYS if arg.startswith(k)), None)
        if key:
            value = arg[len(key) :]
            quote = value[0] if len(value) > 1 and value[0] in "'\"" and value[-1] == value[0] else ""
            inner = value[1:-1] if quote else value
            arg = f"{key}{quote}{without_credentials(inner)}{quote}"
        scrubbed.append(arg)
    return scrubbed


def scrub_environment() -> None:
    """`MLFLOW_TRACKING_URI=http://user:pw@host`: the credentials move to MLflow's own variables,
    so `${oc.env:MLFLOW_TRACKING_URI}` resolves to a clean URI in every saved config."""
    uri = os.environ.get(URI_ENV)
    if uri:
        os.environ[URI_ENV] = without_credentials(uri)


class RedactingRecord(logging.LogRecord):
    """A log record whose message is redacted once, however and wherever it is formatted."""

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        try:
            message = self.getMessage()
        except Exception:  # a malformed record: leave it to logging's own error handling
            return
        clean = redact(message)
        if clean != message:
            self.msg, self.args = clean, None


def install_log_redaction() -> None:
    """Every log record of the process goes through `redact` (before Hydra configures logging)."""
    logging.setLogRecordFactory(RedactingRecord)
