"""The relay's log redaction: no token or Redis password in any line."""

from __future__ import annotations

import logging

import pytest

from simulator.relay.auth import sign_token
from simulator.relay.logs import RedactSecrets, redact

TOKEN = sign_token("a-secret-that-is-at-least-32-bytes-long", "u-1")


def test_jwts_are_blanked_wherever_they_appear() -> None:
    """A whole token, or the truncated head a frame logger prints, is replaced."""
    assert TOKEN not in redact(f"< TEXT '40{{\"token\":\"{TOKEN}\"}}'")
    assert "eyJ" not in redact(f"frame {TOKEN[:40]}...")


def test_secret_query_values_are_blanked() -> None:
    """token=, auth=, password= values in request lines are replaced; others stay."""
    line = redact('"WebSocket /socket.io/?EIO=4&token=abc.def&transport=websocket"')
    assert "abc.def" not in line and "EIO=4" in line and "transport=websocket" in line


def test_redis_passwords_in_urls_are_masked() -> None:
    """redis://:pw@host becomes redis://:***@host."""
    line = redact("lost redis://:hunter2@10.0.0.1:6379/0 now")
    assert line == "lost redis://:***@10.0.0.1:6379/0 now"


def test_the_filter_rewrites_arguments_too(caplog: pytest.LogCaptureFixture) -> None:
    """A secret passed as a %-argument is redacted in the emitted record."""
    logger = logging.getLogger("test.relay.redact")
    logger.addFilter(RedactSecrets())
    with caplog.at_level(logging.INFO, logger="test.relay.redact"):
        logger.info("handshake %s from %s", TOKEN, "redis://:pw@h:1/0")
    assert TOKEN not in caplog.text and ":pw@" not in caplog.text
