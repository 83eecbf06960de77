"""Who a socket is: the JWT in the Socket.IO handshake's ``auth.token``.

The product's API server signs HS256 tokens that carry the user id in the ``userId``
claim. ``TokenVerifier`` accepts exactly those: the algorithm is pinned (a token whose
header says ``none`` or RS256 is refused before any key is used), the signature and
``exp``/``nbf`` are checked, and the user id must be a non-empty string or an integer.
Every refusal names its reason (for the client and the counters) and never the token.
"""

from __future__ import annotations

import time
import warnings
from dataclasses import dataclass
from typing import Any

import jwt

__all__ = ["REFUSAL_REASONS", "Identity", "TokenRefused", "TokenVerifier", "sign_token"]

ALGORITHM = "HS256"

REFUSAL_REASONS = (
    "missing",
    "malformed",
    "algorithm",
    "bad_signature",
    "expired",
    "not_yet_valid",
    "no_user",
    "revoked",
)
"""Why a handshake was refused: the keys of the relay's ``refused`` counters."""

# HS256 keys shorter than the hash (32 bytes) are weak; PyJWT warns on every use. The
# product chooses its secret, so the relay says it once at start instead (see
# ``TokenVerifier.weak_secret``) and keeps its log free of one warning per handshake.
MIN_SECRET_BYTES = 32


class TokenRefused(Exception):
    """The handshake's token does not identify a user; ``reason`` is one of
    ``REFUSAL_REASONS`` and the message is safe to show (it never holds the token)."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason


@dataclass(frozen=True)
class Identity:
    """Who a socket is, and for how long: what the relay keeps of a verified token."""

    user_id: str
    expires_at: float | None = None
    """The token's ``exp`` (epoch seconds); the socket is ended then. None: no ``exp``."""
    issued_at: float | None = None
    """The token's ``iat``: a user's revocation ends the tokens issued up to it."""
    token_id: str | None = None
    """The token's ``jti``, when it has one: it can be revoked alone."""


def _number(value: object) -> float | None:
    return float(value) if type(value) in (int, float) else None  # type: ignore[arg-type]


class TokenVerifier:
    """Verify handshake tokens signed with ``secret`` (HS256); the user id is ``claim``."""

    def __init__(self, secret: str, *, claim: str = "userId", leeway: float = 0.0) -> None:
        if not secret:
            raise ValueError("the JWT secret is empty: pass --jwt-secret or set JWT_SECRET")
        if not claim:
            raise ValueError("the user id claim name is empty")
        self._secret = secret
        self.claim = claim
        self._leeway = leeway

    def __repr__(self) -> str:
        return f"TokenVerifier(secret=***, claim={self.claim!r})"

    @property
    def weak_secret(self) -> bool:
        """True when the secret is shorter than HS256's 32 bytes."""
        return len(self._secret.encode()) < MIN_SECRET_BYTES

    def user_id(self, auth: object) -> str:
        """The user id of a handshake's ``auth`` payload; raises ``TokenRefused``."""
        return self.identify(auth).user_id

    def identify(self, auth: object) -> Identity:
        """The ``Identity`` of a handshake's ``auth`` payload; raises ``TokenRefused``."""
        token = auth.get("token") if isinstance(auth, dict) else None
        if token is None or token == "":
            raise TokenRefused("missing", "authentication required: send auth.token (a JWT)")
        if not isinstance(token, str):
            raise TokenRefused("malformed", "auth.token must be a string (a JWT)")
        claims = self._decode(token)
        value = claims.get(self.claim)
        if isinstance(value, bool) or not isinstance(value, (str, int)) or value == "":
            raise TokenRefused("no_user", f"the token carries no {self.claim!r} claim")
        jti = claims.get("jti")
        return Identity(str(value), _number(claims.get("exp")), _number(claims.get("iat")),
                        jti if isinstance(jti, str) and jti else None)

    def _decode(self, token: str) -> dict[str, Any]:
        try:
            header = jwt.get_unverified_header(token)
        except jwt.DecodeError:
            raise TokenRefused("malformed", "the token is not a JWT") from None
        if header.get("alg") != ALGORITHM:
            # Checked before decoding so `alg: none` never reaches a verifier.
            raise TokenRefused("algorithm", f"the token must be signed with {ALGORITHM}")
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", jwt.InsecureKeyLengthWarning)
                claims: dict[str, Any] = jwt.decode(
                    token, self._secret, algorithms=[ALGORITHM], leeway=self._leeway
                )
        except jwt.ExpiredSignatureError:
            raise TokenRefused("expired", "the token has expired") from None
        except jwt.ImmatureSignatureError:
            raise TokenRefused("not_yet_valid", "the token is not valid yet") from None
        except jwt.InvalidSignatureError:
            raise TokenRefused("bad_signature", "the token's signature does not verify") from None
        except jwt.InvalidTokenError:
            raise TokenRefused("malformed", "the token is not a valid JWT") from None
        return claims


def sign_token(
    secret: str, user_id: str, *, claim: str = "userId", expires_in: float | None = 3600.0,
    now: float | None = None, token_id: str | None = None,
) -> str:
    """An HS256 token for ``user_id``, as the product's API server issues them (with a
    ``jti`` claim when ``token_id`` is given)."""
    issued = time.time() if now is None else now
    claims: dict[str, Any] = {claim: user_id, "iat": int(issued)}
    if expires_in is not None:
        claims["exp"] = int(issued + expires_in)
    if token_id is not None:
        claims["jti"] = token_id
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", jwt.InsecureKeyLengthWarning)
        return jwt.encode(claims, secret, algorithm=ALGORITHM)
