"""TokenVerifier: which handshake tokens identify a user, and why the others do not."""

from __future__ import annotations

import base64
import json
import time

import jwt
import pytest

from simulator.relay.auth import TokenRefused, TokenVerifier, sign_token

SECRET = "unit-test-secret-that-is-32-bytes-long"


def _reason(auth: object, verifier: TokenVerifier | None = None) -> str:
    with pytest.raises(TokenRefused) as refused:
        (verifier or TokenVerifier(SECRET)).user_id(auth)
    assert "eyJ" not in str(refused.value)
    return refused.value.reason


def test_a_token_signed_with_the_secret_gives_its_user_id() -> None:
    """The userId claim of a valid HS256 token is the socket's user."""
    assert TokenVerifier(SECRET).user_id({"token": sign_token(SECRET, "u-17")}) == "u-17"


def test_integer_user_ids_become_strings() -> None:
    """A numeric userId claim routes like its decimal string."""
    token = jwt.encode({"userId": 17}, SECRET, algorithm="HS256")
    assert TokenVerifier(SECRET).user_id({"token": token}) == "17"


@pytest.mark.parametrize("auth", [None, {}, {"token": ""}, "just-a-string"])
def test_no_token_is_refused_as_missing(auth: object) -> None:
    """No auth payload, or one without a token, is refused as missing."""
    assert _reason(auth) == "missing"


@pytest.mark.parametrize("token", ["abc", "a.b.c", 42, ["x"]])
def test_garbage_is_refused_as_malformed(token: object) -> None:
    """Anything that is not a JWT string is refused as malformed."""
    assert _reason({"token": token}) == "malformed"


def test_a_token_signed_with_another_secret_is_refused() -> None:
    """A signature that does not verify with the relay's secret is refused."""
    token = sign_token("some-other-secret-that-is-32-bytes!!", "u-1")
    assert _reason({"token": token}) == "bad_signature"


def test_a_tampered_payload_is_refused() -> None:
    """Changing the user id in a signed token breaks its signature."""
    header, _, signature = sign_token(SECRET, "u-1").split(".")
    forged = base64.urlsafe_b64encode(json.dumps({"userId": "u-2"}).encode()).rstrip(b"=")
    assert _reason({"token": f"{header}.{forged.decode()}.{signature}"}) == "bad_signature"


def test_a_stripped_signature_is_refused() -> None:
    """header.payload. (an HS256 header with the signature cut off) does not verify."""
    header, payload, _ = sign_token(SECRET, "u-1").split(".")
    assert _reason({"token": f"{header}.{payload}."}) == "bad_signature"


def test_an_expired_token_is_refused() -> None:
    """A token past its exp is refused as expired."""
    token = sign_token(SECRET, "u-1", now=time.time() - 3600, expires_in=60)
    assert _reason({"token": token}) == "expired"


def test_a_token_not_valid_yet_is_refused() -> None:
    """A token whose nbf lies in the future is refused."""
    token = jwt.encode({"userId": "u", "nbf": int(time.time()) + 600}, SECRET, algorithm="HS256")
    assert _reason({"token": token}) == "not_yet_valid"


def test_alg_none_is_refused_before_any_verification() -> None:
    """An unsigned token (alg none) is refused for its algorithm."""
    token = jwt.encode({"userId": "u-1"}, None, algorithm="none")
    assert _reason({"token": token}) == "algorithm"


def test_other_algorithms_are_refused() -> None:
    """HS512 with the right secret is still not the pinned HS256."""
    token = jwt.encode({"userId": "u-1"}, SECRET + SECRET, algorithm="HS512")
    assert _reason({"token": token}, TokenVerifier(SECRET + SECRET)) == "algorithm"


@pytest.mark.parametrize("claims", [{}, {"userId": ""}, {"userId": None}, {"userId": True},
                                    {"userId": {"id": 1}}])
def test_a_token_without_a_usable_user_claim_is_refused(claims: dict[str, object]) -> None:
    """The user claim must be a non-empty string or an integer."""
    token = jwt.encode(claims, SECRET, algorithm="HS256")
    assert _reason({"token": token}) == "no_user"


def test_the_claim_name_is_configurable() -> None:
    """With claim="sub" the user id comes from sub, and userId alone is not enough."""
    verifier = TokenVerifier(SECRET, claim="sub")
    assert verifier.user_id({"token": sign_token(SECRET, "u-9", claim="sub")}) == "u-9"
    assert _reason({"token": sign_token(SECRET, "u-9")}, verifier) == "no_user"


def test_the_secret_is_required_and_never_shown() -> None:
    """An empty secret is a configuration error; the repr hides the secret."""
    with pytest.raises(ValueError, match="JWT_SECRET"):
        TokenVerifier("")
    assert SECRET not in repr(TokenVerifier(SECRET))
    assert TokenVerifier("short").weak_secret and not TokenVerifier(SECRET).weak_secret
