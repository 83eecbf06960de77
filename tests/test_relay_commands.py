"""``progress-sim relay`` and ``e2e`` at the edges: one error line and exit 2."""

from __future__ import annotations

import pytest
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
