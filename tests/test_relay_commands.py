"""``progress-sim relay``, ``e2e`` and ``revoke`` at the edges: one error line and exit 2."""

from __future__ import annotations

import time
import uuid

import pytest
import redis
from click.testing import CliRunner

from simulator.cli import cli


@pytest.mark.parametrize("command", [["relay"], ["e2e", "--relay-url", "http://127.0.0.1:1"]])
def test_a_missing_jwt_secret_is_one_error_line(command: list[str]) -> None:
    """Without --jwt-secret or JWT_SECRET the command says so and exits 2."""
    result = CliRunner().invoke(cli, command, env={"JWT_SECRET": ""})
    assert result.exit_code == 2
    assert result.output.strip().splitlines() == [
        "error: a JWT secret is required: --jwt-secret or JWT_SECRET"
    ]


def test_relay_on_a_port_in_use_is_one_error_line() -> None:
    """A port it cannot bind is reported without a traceback."""
    import socket

    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = CliRunner().invoke(
            cli, ["relay", "--port", str(port), "--jwt-secret", "x" * 32]
        )
    assert result.exit_code == 2
    assert result.output.startswith(f"error: cannot listen on 127.0.0.1:{port}")


def test_e2e_against_no_relay_is_one_error_line(redis_url: str) -> None:
    """A relay that cannot be reached is a setup error (exit 2), not a verdict."""
    result = CliRunner().invoke(
        cli, ["--redis-url", redis_url, "e2e", "--relay-url", "http://127.0.0.1:1",
              "--jwt-secret", "x" * 32],
    )
    assert result.exit_code == 2, result.output
    assert result.output.startswith("error: socket 1 of user")


def test_e2e_listen_needs_users() -> None:
    """--listen without --user cannot know whose events to check."""
    result = CliRunner().invoke(
        cli, ["e2e", "--relay-url", "http://x", "--jwt-secret", "s", "--listen", "1"]
    )
    assert result.exit_code == 2
    assert "--listen needs the user ids" in result.output


@pytest.mark.parametrize(("args", "message"), [
    ([], "error: nothing to revoke: give --user ID or --token-id JTI"),
    (["--token-id", "j1"], "error: --token-id needs --token-expires (the token's exp, epoch "
                           "seconds)"),
])  # fmt: skip
def test_revoke_without_what_or_until_when_is_one_error_line(
    args: list[str], message: str
) -> None:
    """`revoke` needs a user or a token, and a token's expiry."""
    result = CliRunner().invoke(cli, ["revoke", *args])
    assert result.exit_code == 2 and result.output.strip().splitlines() == [message]


def test_revoke_against_no_redis_is_one_error_line_without_the_password() -> None:
    """Redis unreachable: one error line, exit 2, the URL's password masked."""
    result = CliRunner().invoke(
        cli, ["--redis-url", "redis://:hunter2-secret@127.0.0.1:1/0", "revoke", "--user", "u"]
    )
    assert result.exit_code == 2
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: cannot reach Redis at")
    assert "hunter2-secret" not in result.output


def test_revoke_writes_the_users_and_tokens_the_relays_check(redis_url: str) -> None:
    """A user's entry holds the time up to which their tokens are revoked; a token's jti is
    kept, scored by its expiry."""
    prefix = f"test-revoke-{uuid.uuid4().hex[:8]}:"
    before, expires = time.time(), time.time() + 600
    result = CliRunner().invoke(cli, [
        "--redis-url", redis_url, "revoke", "--user", "u-17", "--token-id", "jti-9",
        "--token-expires", str(expires), "--snapshot-prefix", prefix,
    ])  # fmt: skip
    assert result.exit_code == 0, result.output
    client = redis.Redis.from_url(redis_url)
    try:
        assert before - 1 <= float(client.hget(f"{prefix}revoked:users", "u-17")) <= time.time()
        assert client.zscore(f"{prefix}revoked:tokens", "jti-9") == pytest.approx(expires)
    finally:
        client.delete(f"{prefix}revoked:users", f"{prefix}revoked:tokens")
        client.close()
