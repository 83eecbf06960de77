"""The relay's logging: one format, and nothing secret in any line.

Tokens travel in the Socket.IO handshake's payload (and some clients put them in the URL);
Redis passwords in ``REDIS_URL``. The relay's own lines never include either, but the
libraries under it would: the ``websockets`` library logs frame contents at debug level,
uvicorn logs request paths with their query strings. So those library loggers are held
at WARNING whatever ``--log-level`` says, and every line passes ``RedactSecrets``, which
blanks anything shaped like a JWT, ``token=``-like query values and URL passwords.
"""

from __future__ import annotations

import logging
import re
import sys

from progress_sdk.transport import mask_url

__all__ = ["RedactSecrets", "configure_logging", "redact"]

_JWT = re.compile(r"eyJ[A-Za-z0-9_-]{2,}(?:\.[A-Za-z0-9_-]*){0,2}")
_QUERY_SECRET = re.compile(
    r"(?i)([?&](?:token|access_token|auth|authorization|jwt|password)=)[^&\s\"']*"
)
_URL = re.compile(r"\b(?:rediss?|unix|https?|wss?)://\S+")

# Loggers that print wire contents or request lines at debug/info level.
_CHATTY_LIBRARIES = ("websockets", "uvicorn.protocols", "engineio", "socketio")


def redact(text: str) -> str:
    """``text`` with JWTs, secret-looking query values and URL passwords blanked."""
    text = _JWT.sub("<token>", text)
    text = _QUERY_SECRET.sub(r"\1***", text)
    return _URL.sub(lambda match: mask_url(match.group(0)), text)


class RedactSecrets(logging.Filter):
    """Rewrites each record's message through ``redact`` (arguments included)."""

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        cleaned = redact(message)
        if record.exc_info and not record.exc_text:
            record.exc_text = logging.Formatter().formatException(record.exc_info)
        if record.exc_text:
            record.exc_text = redact(record.exc_text)
        if cleaned != message or record.args:
            record.msg, record.args = cleaned, None
        return True


def configure_logging(level: str) -> None:
    """Log to stderr at ``level`` through ``RedactSecrets``; libraries that print wire
    contents stay at WARNING."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(
        logging.Formatter("%(asctime)s relay[%(process)d] %(levelname)s %(name)s: %(message)s")
    )
    handler.addFilter(RedactSecrets())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    for name in _CHATTY_LIBRARIES:
        logging.getLogger(name).setLevel(max(logging.WARNING, root.level))
