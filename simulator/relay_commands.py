"""The ``relay`` and ``e2e`` commands of ``progress-sim`` (the ``relay`` extra).

Thin: options in, ``simulator.relay`` / ``simulator.e2e`` objects built, results out.
Exit status: 0 fine (for ``e2e``: every event reached every socket of its user only, in
order, once); 1 ``e2e`` found a delivery fault; 2 bad usage or nothing to work with.
"""

from __future__ import annotations

import json
import logging
import secrets
import shlex
import sys
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, TypeVar

import click

from progress_sdk import defaults as d
from progress_sdk.snapshot import SnapshotKeys
from progress_sdk.transport import mask_url

from .cli_context import CliContext, fail, pass_cli

if TYPE_CHECKING:
    import socket

    from .relay.server import Relay, RelayConfig

__all__ = ["e2e", "e2e_command", "relay"]

ENV_JWT_SECRET = "JWT_SECRET"

F = TypeVar("F", bound=Callable[..., Any])


def _need_relay_extra() -> None:
    try:
        import jwt  # noqa: F401, PLC0415
        import socketio  # noqa: F401, PLC0415
        import uvicorn  # noqa: F401, PLC0415
    except ImportError as exc:
        fail(
            f"this command needs the relay extra ({exc.name} is missing): "
            "pip install 'progress-sdk[relay]'"
        )


def _secret_option(help_text: str) -> Callable[[F], F]:
    return click.option(
        "--jwt-secret", envvar=ENV_JWT_SECRET, default=None, show_envvar=False,
        help=f"{help_text} Env: {ENV_JWT_SECRET}.",
    )


@click.command()
@click.option("--host", default="127.0.0.1", show_default=True,
              help="Interface to listen on (0.0.0.0: all).")
@click.option("--port", type=click.IntRange(0, 65535), default=3001, show_default=True,
              help="TCP port (0: pick a free one; the `listening on` line names it).")
@_secret_option("HS256 secret that signs the clients' tokens (the product API's JWT secret).")
@click.option("--user-claim", default="userId", show_default=True,
              help="The token claim that holds the user id.")
@click.option("--cors-origin", "cors_origins", multiple=True,
              help="Browser origin allowed to connect (repeatable). [default: any]")
@click.option("--reuse-port", is_flag=True,
              help="Share the port with other relay processes (SO_REUSEPORT): the kernel "
              "spreads connections over them.")
@click.option("--log-level", type=click.Choice(["debug", "info", "warning", "error"]),
              default="info", show_default=True)
@click.option("--event-loop", type=click.Choice(["auto", "uvloop", "asyncio"]), default="auto",
              show_default=True, help="auto: uvloop when installed (the relay extra has it).")
@click.option("--snapshot-prefix", envvar=d.ENV_SNAPSHOT_PREFIX,
              default=d.DEFAULT_SNAPSHOT_PREFIX, show_default=True,
              help="Key prefix of the publishers' snapshots (catch-up on connect, sweeper). "
              f"Env: {d.ENV_SNAPSHOT_PREFIX}.")
@click.option("--catch-up/--no-catch-up", default=True, show_default=True,
              help="Send each new socket progress_snapshot per in-flight media first.")
@click.option("--catch-up-max-media", type=click.IntRange(min=1), default=500,
              show_default=True,
              help="At most this many media per socket in a catch-up or resync, the most "
              "recently updated first.")
@click.option("--catch-up-per-user", type=click.IntRange(min=1), default=4, show_default=True,
              help="Catch-ups of one user's sockets at once; more wait their turn.")
@click.option("--revocation-interval", type=click.FloatRange(min=0, min_open=True),
              default=5.0, show_default=True,
              help="Seconds between two checks of every socket against the revoked users "
              "and tokens in Redis (docs/relay.md, Token expiry and revocation).")
@click.option("--sweep/--no-sweep", default=True, show_default=True,
              help="Fail media whose worker is gone (its liveness key lapsed; one node acts "
              "at a time).")
@click.option("--stale-after", type=click.FloatRange(min=0, min_open=True),
              default=d.DEFAULT_SWEEP_STALE_AFTER, show_default=True,
              help="Seconds without news after which the sweeper fails a media that names "
              "no owner (a producer without liveness, or a media waiting on a queue).")
@click.option("--stuck-after", type=click.FloatRange(min=d.MIN_STUCK_AFTER), default=None,
              help="Also fail media of live workers after this many seconds without news "
              "(off by default: a live worker's silence is shown, not failed).")
@click.option("--max-backlog-bytes", type=click.IntRange(min=1),
              default=d.DEFAULT_RELAY_MAX_BACKLOG_BYTES, show_default=True,
              help="Bytes that may wait for one socket (a browser that stopped reading); past "
              "it the socket is disconnected and resyncs from the snapshots on reconnect.")
@click.option("--max-backlog-events", type=click.IntRange(min=1),
              default=d.DEFAULT_RELAY_MAX_BACKLOG_EVENTS, show_default=True,
              help="Packets that may wait for one socket (as --max-backlog-bytes).")
@click.option("--user-channels", is_flag=True,
              help="Read only the events of this relay's users, from <channel>:user:<id> "
              "(publishers with user channels on), not the whole channel: each node reads "
              "its own users' events (docs/relay.md, User channels; on a Redis Cluster too).")
@click.option("--dev", is_flag=True,
              help="Print the page's URL with a token for each simulated user (user-1, ...); "
              "without a secret, make one up.")
@click.option("--dev-users", type=click.IntRange(min=1), default=3, show_default=True,
              help="How many simulated users --dev prints URLs for.")
@pass_cli
def relay(  # noqa: PLR0917 - one parameter per click option
    cli: CliContext,
    host: str,
    port: int,
    jwt_secret: str | None,
    user_claim: str,
    cors_origins: tuple[str, ...],
    reuse_port: bool,
    log_level: str,
    event_loop: str,
    snapshot_prefix: str,
    catch_up: bool,
    catch_up_max_media: int,
    catch_up_per_user: int,
    revocation_interval: float,
    sweep: bool,
    stale_after: float,
    max_backlog_bytes: int,
    max_backlog_events: int,
    stuck_after: float | None,
    user_channels: bool,
    dev: bool,
    dev_users: int,
) -> None:
    """Relay the channel's events to browsers over Socket.IO, a private room per user.

    Clients connect with a JWT in the handshake's auth.token; each event goes to its user's sockets
    as progress_update (plus media_update / processing_error at the end of a media). Run several,
    each on its own port (or one with --reuse-port), for more sockets: every relay subscribes to
    Redis itself and serves only its own sockets, so a user's sockets on different relays each get
    every event once (with --user-channels each relay reads only its own users' events). Redis may
    be down at start or restart later: the relay reconnects.

    GET / is a browser panel (open it with a token: /#token=...; --dev prints such URLs). A new
    socket first gets progress_snapshot per in-flight media of its user, then live events; after
    Redis comes back every connected socket is resynced from the snapshots; a socket is ended at its
    token's exp or when revoked (progress-sim revoke); every node runs the dead-worker sweeper, one
    acts at a time. A socket's waiting progress updates are replaced by newer ones; past
    --max-backlog-bytes/-events waiting it is disconnected (it reconnects and resyncs).
    """
    _need_relay_extra()
    from .relay import RelayConfig, configure_logging, serve  # noqa: PLC0415
    from .relay.backlog import BacklogLimits  # noqa: PLC0415 - the relay extra

    jwt_secret, made_up = _jwt_secret(jwt_secret, dev)
    if not user_claim:
        fail("--user-claim must not be empty")
    configure_logging(log_level)
    config = RelayConfig(
        jwt_secret=jwt_secret, redis_url=cli.url, channel=cli.channel, shards=cli.shards,
        user_claim=user_claim, cors_origins=list(cors_origins) if cors_origins else "*",
        backlog=BacklogLimits(max_backlog_bytes, max_backlog_events), user_channels=user_channels,
    )
    node = _relay_node(config, SnapshotKeys(snapshot_prefix), catch_up=catch_up, sweep=sweep,
                       stale_after=stale_after, stuck_after=stuck_after,
                       catch_up_media=catch_up_max_media, catch_up_per_user=catch_up_per_user,
                       revocation_interval=revocation_interval)
    sock = _bind(host, port, reuse_port)
    ready = _announce(config, dev_users if dev else 0, show_secret=made_up)
    serve(node, sock, log_level=log_level, event_loop=event_loop, on_ready=ready)


def _jwt_secret(given: str | None, dev: bool) -> tuple[str, bool]:
    """The relay's secret and whether --dev made it up (then ``e2e`` may print it)."""
    if dev and not given:
        return secrets.token_urlsafe(32), True
    if not given:
        fail(f"a JWT secret is required: --jwt-secret or {ENV_JWT_SECRET}")
    return given, False


def _bind(host: str, port: int, reuse_port: bool) -> socket.socket:
    """The relay's listening socket, or one ``error:`` line."""
    from .relay import bind  # noqa: PLC0415 - the relay extra

    try:
        return bind(host, port, reuse_port=reuse_port)
    except OSError as exc:
        fail(f"cannot listen on {host}:{port}: {exc.strerror or exc}")


def _relay_node(
    config: RelayConfig, keys: SnapshotKeys, *, catch_up: bool, sweep: bool,
    stale_after: float, stuck_after: float | None, catch_up_media: int,
    catch_up_per_user: int, revocation_interval: float,
) -> Relay:
    """The relay with its catch-up, sweeper and revocation (``install_extras``)."""
    from .relay import Relay  # noqa: PLC0415 - the relay extra
    from .relay.catchup import CatchUpLimits  # noqa: PLC0415 - the relay extra
    from .relay.extras import install_extras  # noqa: PLC0415 - the relay extra

    catch_up_limits = CatchUpLimits(max_media=catch_up_media, per_user=catch_up_per_user)
    node = Relay(config)
    install_extras(node, keys, catch_up=catch_up, sweep=sweep, stale_after=stale_after,
                   catch_up_limits=catch_up_limits, revocation_interval=revocation_interval,
                   stuck_after=stuck_after)
    if node.verifier.weak_secret:
        logging.getLogger("progress_sim.relay").warning(
            "the JWT secret is shorter than 32 bytes: weak for HS256"
        )
    return node


def e2e_command(config: RelayConfig, url: str, *, show_secret: bool) -> str:
    """The ``progress-sim e2e`` command line that checks this relay, ready to paste.

    The secret is spelled out only when --dev made it up (it signs the printed dev
    tokens anyway); a secret the user gave stays in their environment, and so does a
    Redis URL that carries a password (no message shows one).
    """
    secret = f"JWT_SECRET={shlex.quote(config.jwt_secret)} " if show_secret else ""
    redis_url = config.redis_url
    shown_url = '"$REDIS_URL"' if mask_url(redis_url) != redis_url else shlex.quote(redis_url)
    # A relay on user channels reads only what publishers also send there.
    users = f"{d.ENV_USER_CHANNELS}=1 " if config.user_channels else ""
    words = [f"{secret}{users}progress-sim --redis-url {shown_url}"]
    if config.channel != d.DEFAULT_CHANNEL:
        words.append(f"--channel {shlex.quote(config.channel)}")
    if config.shards != d.DEFAULT_SHARDS:
        words.append(f"--shards {config.shards}")
    words.append(f"e2e --relay-url {shlex.quote(url)}")
    if config.user_claim != "userId":
        words.append(f"--user-claim {shlex.quote(config.user_claim)}")
    return " ".join(words)


def _announce(
    config: RelayConfig, dev_users: int, *, show_secret: bool = False
) -> Callable[[str], None]:
    """What the relay prints once it listens: where, and with --dev (``dev_users`` > 0)
    a page URL with a token for each of the first simulated users and the ``e2e``
    command line that checks this relay."""
    from .relay import sign_token  # noqa: PLC0415 - the relay extra

    def ready(url: str) -> None:
        click.echo(
            f"progress-sim relay: listening on {url} (Socket.IO at /socket.io/, "
            f"GET /healthz); channel {config.channel!r}"
            f"{' (user channels)' if config.user_channels else ''} on "
            f"{mask_url(config.redis_url)}; "
            f"user id from claim {config.user_claim!r}",
            err=True,
        )
        for i in range(1, dev_users + 1):
            user_id = f"user-{i}"
            token = sign_token(
                config.jwt_secret, user_id, claim=config.user_claim, expires_in=86_400
            )
            click.echo(f"{user_id}: {url}/#token={token}")
        if dev_users:
            click.echo(f"e2e: {e2e_command(config, url, show_secret=show_secret)}")

    return ready


@click.command()
@click.option("--relay-url", "relay_urls", multiple=True, required=True,
              help="The relay to check (repeatable: each user's sockets are spread over them).")
@_secret_option("HS256 secret to sign the test users' tokens with (the relay's).")
@click.option("--user-claim", default="userId", show_default=True,
              help="The token claim that holds the user id.")
@click.option("--users", type=click.IntRange(min=1), default=3, show_default=True,
              help="Simulated users (each gets fresh ids; a bystander user is added).")
@click.option("--sockets-per-user", type=click.IntRange(min=1), default=2, show_default=True)
@click.option("--media", type=click.IntRange(min=1), default=6, show_default=True)
@click.option("--models", "models", multiple=True, default=("all",), show_default=True,
              help="Models to run: names or presets, comma-separated or repeated.")
@click.option("--speed", type=click.FloatRange(min=0), default=0.0, show_default=True,
              help="Time multiplier (0: as fast as possible).")
@click.option("--seed", type=int, default=1, show_default=True)
@click.option("--settle", type=click.FloatRange(min=0, min_open=True), default=5.0,
              show_default=True,
              help="Seconds of silence after which events not received count as lost.")
@click.option("--listen", "listen_seconds", type=click.FloatRange(min=0, min_open=True),
              default=None, help="Do not simulate: watch another producer for this many "
              "seconds (needs --user).")
@click.option("--user", "watch_users", multiple=True,
              help="With --listen: a user id whose events to check (repeatable).")
@click.option("--json", "as_json", is_flag=True, help="Print the report as JSON.")
@click.option("--late-join/--no-late-join", default=True, show_default=True,
              help="Also check catch-up: a socket joining mid-run (progress_snapshot).")
@pass_cli
def e2e(  # noqa: PLR0917 - one parameter per click option
    cli: CliContext,
    relay_urls: tuple[str, ...],
    jwt_secret: str | None,
    user_claim: str,
    users: int,
    sockets_per_user: int,
    media: int,
    models: tuple[str, ...],
    speed: float,
    seed: int,
    settle: float,
    listen_seconds: float | None,
    watch_users: tuple[str, ...],
    as_json: bool,
    late_join: bool,
) -> None:
    """Check a relay end to end: every event of a user reaches every socket of that user
    and no other, in order, exactly once.

    Connects Socket.IO clients as several users, subscribes to the channel as ground
    truth, runs a simulation through the SDK (or, with --listen, watches another
    producer) and compares. Works with any relay that follows the contract, including
    one that forwards only the product's six fields. Reports worker → browser latency.
    While simulating, one more socket joins mid-run and must catch up: progress_snapshot
    first, then live events with no gap or repeat, ending with the same panel as a
    socket there from the start (--no-late-join for relays without catch-up).
    Exit status: 0 delivered right, 1 a fault (each named), 2 could not run.
    """
    _need_relay_extra()
    import asyncio  # noqa: PLC0415

    from .catalog import UnknownModelError, resolve_models  # noqa: PLC0415
    from .e2e import E2EConfig, E2ESetupError, run_e2e  # noqa: PLC0415 - the relay extra

    if not jwt_secret:
        fail(f"a JWT secret is required: --jwt-secret or {ENV_JWT_SECRET}")
    if listen_seconds is not None and not watch_users:
        fail("--listen needs the user ids to check: --user ID (repeatable)")
    try:
        names = resolve_models(models)
    except UnknownModelError as exc:
        raise click.BadParameter(str(exc), param_hint="--models") from None
    config = E2EConfig(
        relay_urls=relay_urls, jwt_secret=jwt_secret,
        redis_url=cli.url,
        channel=cli.channel,
        shards=cli.shards,
        user_claim=user_claim, users=users, sockets_per_user=sockets_per_user, media=media,
        models=names, speed=speed, seed=seed, settle_seconds=settle,
        listen_seconds=listen_seconds, watch_users=watch_users, late_join=late_join,
    )
    try:
        result = asyncio.run(run_e2e(config))
    except E2ESetupError as exc:
        fail(str(exc))
    click.echo(json.dumps(result.to_dict(), indent=2) if as_json else result.to_text())
    sys.exit(0 if result.ok else 1)


@click.command()
@click.option("--user", "users", multiple=True,
              help="A user whose sessions to end: every token issued up to now (repeatable).")
@click.option("--token-id", "token_ids", multiple=True,
              help="A token to revoke, by its jti claim (repeatable; needs --token-expires).")
@click.option("--token-expires", type=float, default=None,
              help="When those tokens expire (epoch seconds): the revocation is kept until "
              "then.")
@click.option("--snapshot-prefix", envvar=d.ENV_SNAPSHOT_PREFIX,
              default=d.DEFAULT_SNAPSHOT_PREFIX, show_default=True,
              help=f"The relays' --snapshot-prefix. Env: {d.ENV_SNAPSHOT_PREFIX}.")
@pass_cli
def revoke(
    cli: CliContext, users: tuple[str, ...], token_ids: tuple[str, ...],
    token_expires: float | None, snapshot_prefix: str,
) -> None:
    """End sessions on every relay: a user's (their tokens issued up to now) or single
    tokens (by jti).

    Writes the revocation to Redis; every relay refuses the tokens at the handshake and
    ends their connected sockets (session_ended, reason "revoked") within its
    --revocation-interval (default 5 s). A token issued after a user's revocation works.
    """
    _need_relay_extra()
    import time  # noqa: PLC0415

    import redis  # noqa: PLC0415

    from progress_sdk.cluster import client_for  # noqa: PLC0415

    from .relay.sessions import RevocationKeys, revoke_token, revoke_user  # noqa: PLC0415

    if not users and not token_ids:
        fail("nothing to revoke: give --user ID or --token-id JTI")
    if token_ids and token_expires is None:
        fail("--token-id needs --token-expires (the token's exp, epoch seconds)")
    url = cli.url
    keys, now = RevocationKeys(snapshot_prefix), time.time()
    try:
        client = client_for(url)
        for user in users:
            revoke_user(client, keys, user, at=now)
        for token_id in token_ids:
            revoke_token(client, keys, token_id, token_expires or now)
    except (redis.RedisError, OSError) as exc:
        fail(f"cannot reach Redis at {mask_url(url)}: {mask_url(str(exc))}")
    click.echo(f"revoked {len(users)} user(s) (tokens issued up to {int(now)}) and "
               f"{len(token_ids)} token(s) under {snapshot_prefix!r} at {mask_url(url)}")
