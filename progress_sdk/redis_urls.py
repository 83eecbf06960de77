"""Redis URLs: hide their secrets in anything shown to people, refuse unusable ones.

``mask_url`` is the one masking function: reprs, log lines, exceptions and the CLI's
banners and error lines all pass URLs (and texts that may quote one) through it. It
covers every form redis-py's ``from_url`` reads a secret from:

* ``redis://:pw@host``, ``redis://user:pw@host``, ``rediss://…``, ``unix://:pw@/path``;
* ``?password=…`` (and any query parameter whose name says pass, secret, token or auth),
  up to the next ``&`` (an unencoded ``#`` in it is hidden too);
* a password holding an unencoded ``/``, ``#``, ``?`` or ``@``, which URL parsers split
  in the wrong place: the text is read by hand, and everything between ``://`` and the
  last ``@`` counts as credentials;
* a bare user name before ``@`` (``redis://token@host``): some providers put a token
  there, so it is hidden too.

``check_redis_url`` raises ``ConfigurationError`` (password masked, saying what to do)
for a URL redis-py would refuse or, worse, silently misread.
"""

from __future__ import annotations

import re
from typing import NoReturn

from .exceptions import ConfigurationError

__all__ = ["check_redis_url", "mask_url"]

SCHEMES = ("redis", "rediss", "unix")

_MASK = "***"
# A URL in free text starts at its scheme and ends at whitespace or a quote.
_URL_IN_TEXT = re.compile(r"""[A-Za-z][A-Za-z0-9+.\-]*://[^\s'"]*""")
_SECRET_PARAM = re.compile(
    r"(?P<name>(?:^|[?&;])[^=&;#]*(?:pass|secret|token|auth)[^=&;#]*=)[^&;]*", re.IGNORECASE
)
_USAGE = (
    "use redis://[[user]:password@]host[:port][/db], rediss:// for TLS or "
    "unix://[[user]:password@]/path/to/socket[?db=N]"
)
# What a URL without its scheme usually is ("localhost:6379/0"): safe to quote back.
_HOST_PORT = re.compile(r"[A-Za-z0-9.\-]+(?::\d+)?(?:/\d+)?")
# redis-py's own messages for a bad query value name the parameter, never its value.
_SAFE_REDIS_PY_ERROR = re.compile(r"Invalid value for '[A-Za-z_]+' in connection URL\.")


def mask_url(text: str) -> str:
    """``text`` with the secrets of every URL in it replaced by ``***``.

    A text that is one URL (no line break) is masked whole, so a password with spaces
    cannot end the URL early; in longer texts each URL ends at whitespace or a quote.
    """
    if "://" not in text:
        if "@" in text and not any(c.isspace() for c in text):
            # A URL missing its scheme ("user:pw@host:6379"), quoted when refused.
            return f"{_MASK}@{text.rpartition('@')[2]}"
        return text
    if "\n" not in text and _URL_IN_TEXT.match(text):
        return _mask_one(text)
    return _URL_IN_TEXT.sub(lambda match: _mask_one(match.group()), text)


def _mask_one(url: str) -> str:
    scheme, _, rest = url.partition("://")
    at = rest.rfind("@")
    if at >= 0:
        userinfo, hostpart = rest[:at], rest[at + 1 :]
        user, colon, _ = userinfo.partition(":")
        keep_user = colon and not any(c in user for c in "/?#")
        credentials = f"{user}:{_MASK}" if keep_user else _MASK
        rest = f"{credentials}@{hostpart}"
        tail_from = len(credentials) + 1
    else:
        tail_from = 0
    query_at = rest.find("?", tail_from)
    if query_at >= 0:
        head, query = rest[:query_at], rest[query_at:]
        rest = head + _SECRET_PARAM.sub(lambda m: m.group("name") + _MASK, query)
    return f"{scheme}://{rest}"


def check_redis_url(url: str) -> None:
    """Raise ``ConfigurationError`` unless redis-py can use ``url`` as it was meant.

    The message shows the URL masked and says how to write it.
    """
    # Imported here: `progress-sim validate` imports this package without redis.
    from redis.connection import parse_url  # noqa: PLC0415

    scheme, sep, rest = url.partition("://")
    if not sep or scheme not in SCHEMES:
        _refuse(url, "it must start with redis://, rediss:// or unix://")
    at = rest.rfind("@")
    userinfo = rest[:at] if at >= 0 else ""
    if any(c in userinfo for c in "/?#") and "=" not in userinfo:
        # urlsplit would end the host part at that character: redis-py would take part
        # of the password for the host and connect somewhere else with a wrong password.
        _refuse(
            url,
            "its password holds an unencoded '/', '?', '#' or '@'; percent-encode them "
            "(%2F, %3F, %23, %40)",
        )
    if "#" in rest[at + 1 :]:
        # A fragment means nothing to redis-py: it is a value (a password in the query)
        # cut short at its unencoded '#'.
        _refuse(url, "it holds an unencoded '#'; percent-encode it as %23")
    try:
        parse_url(url)  # type: ignore[no-untyped-call]  # redis-py leaves it untyped
    except ValueError as exc:
        reason = str(exc)
        if "Port" in reason or "port" in reason:
            # urllib quotes what it took for the port, which can be part of a password.
            _refuse(url, "its port is not a number from 0 to 65535")
        if _SAFE_REDIS_PY_ERROR.fullmatch(reason):
            _refuse(url, reason.rstrip("."))
        _refuse(url, "redis-py cannot read it")


def _refuse(url: str, why: str) -> NoReturn:
    if "://" in url or _HOST_PORT.fullmatch(url):
        shown = repr(mask_url(url))
    else:
        shown = "(not shown: it is no URL, and may be a secret pasted in the wrong place)"
    raise ConfigurationError(f"unusable Redis URL {shown}: {why}; {_USAGE}")
