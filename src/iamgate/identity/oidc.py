"""Web identity tokens: an OIDC ID token from a CI system, checked against an issuer we trust.

These are the checks STS makes for `AssumeRoleWithWebIdentity`, made by the gateway itself so
a CI job's token is exchanged for gateway credentials and never for AWS ones. A token is good
when a key its issuer publishes signed it with an algorithm we allow, its issuer and audience
are the trusted ones, and now lies in its time window (with a small leeway for clocks).
Only asymmetric algorithms are allowed: never `none`, and never an HMAC, which a verifier
holding a public key could be tricked into checking with that key as the secret.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, Literal

import jwt

# Asymmetric algorithms and the JWK key type each needs.
KEY_TYPES: Mapping[str, str] = {
    "RS256": "RSA",
    "RS384": "RSA",
    "RS512": "RSA",
    "PS256": "RSA",
    "ES256": "EC",
    "ES384": "EC",
}
MAX_TOKEN_BYTES = 16 * 1024

TokenProblem = Literal["InvalidIdentityToken", "ExpiredTokenException"]


class TokenRefused(Exception):
    """Why a token is not accepted, in words the job's log can show; `code` is STS's."""

    def __init__(self, message: str, code: TokenProblem = "InvalidIdentityToken") -> None:
        super().__init__(message)
        self.code: TokenProblem = code
        self.message = message


class IssuerUnreachable(TokenRefused):
    """The issuer's keys could not be fetched: nothing is known of the token yet, and a
    retry may succeed (STS says `IDPCommunicationError`, which the SDKs retry)."""


class UnknownKey(TokenRefused):
    """The token names a key the issuer's key set we hold does not have: after one refetch
    of the key set it may be known (the issuer rotated its keys)."""

    def __init__(self, kid: str | None) -> None:
        super().__init__(f"the issuer has no signing key with kid {kid!r}")
        self.kid = kid


@dataclass(frozen=True, slots=True)
class TrustedIssuer:
    url: str  # exactly as the token's `iss` claim gives it
    audiences: tuple[str, ...]
    algorithms: tuple[str, ...] = ("RS256", "ES256")
    leeway: timedelta = timedelta(seconds=60)


@dataclass(frozen=True, slots=True)
class KeySet:
    """An issuer's published keys (its JWKS), by key id."""

    keys: Mapping[str, jwt.PyJWK]

    @classmethod
    def from_jwks(cls, document: Mapping[str, Any]) -> KeySet:
        """Keys we can use; a key of a type or use we cannot use is left out, not an error,
        as issuers publish keys for other purposes beside their signing keys."""
        keys: dict[str, jwt.PyJWK] = {}
        for entry in document.get("keys", []) or []:
            if not isinstance(entry, Mapping) or entry.get("use", "sig") != "sig":
                continue
            kid = entry.get("kid")
            if not isinstance(kid, str) or entry.get("kty") not in ("RSA", "EC"):
                continue
            try:
                keys[kid] = jwt.PyJWK(dict(entry))
            except jwt.PyJWTError:
                continue
        return cls(keys)


def token_header(token: str) -> Mapping[str, Any]:
    """The token's header, read before anything is trusted: which issuer key to use."""
    if len(token) > MAX_TOKEN_BYTES:
        raise TokenRefused(f"the token is longer than {MAX_TOKEN_BYTES} bytes")
    try:
        return jwt.get_unverified_header(token)
    except jwt.PyJWTError:
        raise TokenRefused("the token is not a JSON Web Token (JWS compact form)") from None


def token_issuer(token: str) -> str:
    """The `iss` the token claims, unverified: only to pick the issuer to verify it with."""
    token_header(token)
    try:
        claims = jwt.decode(token, options={"verify_signature": False})
    except jwt.PyJWTError:
        raise TokenRefused("the token's claims are not a JSON object") from None
    issuer = claims.get("iss")
    if not isinstance(issuer, str) or not issuer:
        raise TokenRefused("the token names no issuer (iss)")
    return issuer


def verify_token(
    token: str, issuer: TrustedIssuer, keys: KeySet, *, now: datetime
) -> dict[str, Any]:
    """The token's claims once every check has passed; `TokenRefused` naming the first that
    failed otherwise (`UnknownKey` when only the key is unknown)."""
    header = token_header(token)
    algorithm = header.get("alg")
    if algorithm not in issuer.algorithms or algorithm not in KEY_TYPES:
        allowed = ", ".join(a for a in issuer.algorithms if a in KEY_TYPES)
        raise TokenRefused(
            f"the token's algorithm {algorithm!r} is not allowed (allowed: {allowed})"
        )
    kid = header.get("kid")
    key = keys.keys.get(kid) if isinstance(kid, str) else None
    if key is None:
        raise UnknownKey(kid if isinstance(kid, str) else None)
    if key.key_type != KEY_TYPES[algorithm] or key.algorithm_name not in (algorithm, None):
        raise TokenRefused(f"key {kid!r} is not a key for {algorithm}")
    try:
        claims: dict[str, Any] = jwt.decode(
            token,
            key=key.key,
            algorithms=[algorithm],
            audience=list(issuer.audiences),
            issuer=issuer.url,
            # The time window is checked below against `now`, PyJWT would read the clock.
            options={
                "require": ["exp", "iat", "iss", "aud", "sub"],
                "verify_exp": False,
                "verify_nbf": False,
                "verify_iat": False,
            },
        )
    except jwt.InvalidAudienceError:
        raise TokenRefused(
            f"Incorrect token audience: {_unverified(token, 'aud')} is not "
            f"{' or '.join(issuer.audiences)}"
        ) from None
    except jwt.InvalidIssuerError:
        raise TokenRefused(f"the token's issuer is not {issuer.url}") from None
    except jwt.InvalidSignatureError:
        raise TokenRefused(f"the token's signature does not verify with key {kid!r}") from None
    except jwt.MissingRequiredClaimError as exc:
        raise TokenRefused(f"the token has no {exc.claim!r} claim") from None
    except jwt.PyJWTError as exc:
        raise TokenRefused(f"the token is not valid: {exc}") from None
    _check_window(claims, now, issuer.leeway)
    return claims


def _check_window(claims: Mapping[str, Any], now: datetime, leeway: timedelta) -> None:
    times: dict[str, datetime] = {}
    for name in ("exp", "iat", "nbf"):
        value = claims.get(name)
        if value is None:
            continue
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise TokenRefused(f"the token's {name!r} claim is not a number of seconds")
        try:
            times[name] = datetime.fromtimestamp(value, UTC)
        except (OverflowError, OSError, ValueError):
            raise TokenRefused(f"the token's {name!r} claim is out of range") from None
    if now - leeway >= times["exp"]:
        raise TokenRefused(
            f"Token expired: current date/time {_iso(now)} must be before the expiration "
            f"date/time {_iso(times['exp'])}",
            "ExpiredTokenException",
        )
    if "nbf" in times and now + leeway < times["nbf"]:
        raise TokenRefused(f"the token is not valid before {_iso(times['nbf'])} (now {_iso(now)})")
    if now + leeway < times["iat"]:
        raise TokenRefused(f"the token was issued in the future ({_iso(times['iat'])})")


def _iso(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _unverified(token: str, name: str) -> str:
    value = jwt.decode(token, options={"verify_signature": False}).get(name)
    return json.dumps(value)[:200]
