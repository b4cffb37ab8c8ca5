"""Gateway credentials: short-lived AWS-style keys that only iamgate accepts.

A credential is three strings a client already knows how to use: an access key id
(`ASIA` + 16 base32 characters), a secret access key, and a session token. The session
token is a signed, versioned claim set; the secret is derived from the token with a server
key. So any replica holding the keyring verifies a request without a database read, and a
leaked token alone is useless without the secret it implies.

Token format: `iamgate1.<kid>.<claims, base64url JSON>.<mac, base64url>`.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
import secrets
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Literal

from iamgate.refusals import Reason, Refused

TOKEN_VERSION = "iamgate1"
ACCESS_KEY_PREFIX = "ASIA"
DEFAULT_TTL = timedelta(hours=1)
_B32 = set("ABCDEFGHIJKLMNOPQRSTUVWXYZ234567")

PrincipalKind = Literal["user", "bot"]


@dataclass(frozen=True, slots=True)
class ServerKey:
    kid: str
    secret: bytes

    @classmethod
    def generate(cls) -> ServerKey:
        return cls(kid=secrets.token_hex(4), secret=secrets.token_bytes(32))

    def subkey(self, purpose: str) -> bytes:
        """Separate keys for separate jobs, so a MAC can never double as a secret."""
        return hmac.new(self.secret, purpose.encode(), hashlib.sha256).digest()


class KeyRing:
    """The server keys a replica accepts; the newest one signs new credentials."""

    def __init__(self, keys: Mapping[str, ServerKey], current: str) -> None:
        if current not in keys:
            raise ValueError("the current key must be in the ring")
        self._keys = dict(keys)
        self._current = current
        self._mac_keys = {kid: k.subkey("token-mac") for kid, k in keys.items()}
        self._secret_keys = {kid: k.subkey("secret-access-key") for kid, k in keys.items()}

    @property
    def current(self) -> ServerKey:
        return self._keys[self._current]

    def __contains__(self, kid: str) -> bool:
        return kid in self._keys

    def mac_key(self, kid: str) -> bytes:
        return self._mac_keys[kid]

    def secret_key(self, kid: str) -> bytes:
        return self._secret_keys[kid]


@dataclass(frozen=True, slots=True)
class Claims:
    """What a gateway credential says about its holder; signed inside the session token."""

    session_id: str  # 10 random bytes, base32: the access key id is derived from it
    principal: str
    kind: PrincipalKind
    account_id: str
    aws_role: str
    gateway_roles: tuple[str, ...]
    issued_at: datetime
    expires_at: datetime
    login_session: str | None = None
    # A bot's credential from a web identity token: the binding that made it (the gateway
    # checks on each call that it still exists) and the job's claims, for the audit trail.
    binding: str | None = None
    job: tuple[tuple[str, str], ...] = ()

    @property
    def access_key_id(self) -> str:
        return ACCESS_KEY_PREFIX + self.session_id

    def to_json(self) -> bytes:
        data: dict[str, object] = {
            "sid": self.session_id,
            "sub": self.principal,
            "knd": self.kind,
            "acc": self.account_id,
            "rol": self.aws_role,
            "grs": list(self.gateway_roles),
            "iat": int(self.issued_at.timestamp()),
            "exp": int(self.expires_at.timestamp()),
            "lsn": self.login_session,
        }
        if self.binding is not None:  # only a bot's: a person's credential stays as small
            data["bnd"] = self.binding
        if self.job:
            data["job"] = dict(self.job)
        return json.dumps(data, separators=(",", ":"), sort_keys=True).encode()

    @classmethod
    def from_json(cls, raw: bytes) -> Claims:
        data = json.loads(raw)
        kind = data["knd"]
        if kind not in ("user", "bot"):
            raise ValueError("unknown principal kind")
        return cls(
            session_id=str(data["sid"]),
            principal=str(data["sub"]),
            kind=kind,
            account_id=str(data["acc"]),
            aws_role=str(data["rol"]),
            gateway_roles=tuple(str(r) for r in data["grs"]),
            issued_at=datetime.fromtimestamp(int(data["iat"]), UTC),
            expires_at=datetime.fromtimestamp(int(data["exp"]), UTC),
            login_session=data.get("lsn"),
            binding=None if data.get("bnd") is None else str(data["bnd"]),
            job=tuple((str(k), str(v)) for k, v in dict(data.get("job") or {}).items()),
        )


@dataclass(frozen=True, slots=True)
class GatewayCredentials:
    access_key_id: str
    secret_access_key: str
    session_token: str
    claims: Claims

    def credential_process_json(self) -> dict[str, object]:
        """The shape the AWS CLI and SDKs read from a `credential_process` command."""
        return {
            "Version": 1,
            "AccessKeyId": self.access_key_id,
            "SecretAccessKey": self.secret_access_key,
            "SessionToken": self.session_token,
            "Expiration": self.claims.expires_at.strftime("%Y-%m-%dT%H:%M:%SZ"),
        }


def _b64(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def _derive_secret(ring: KeyRing, kid: str, signed_part: str) -> str:
    digest = hmac.new(ring.secret_key(kid), signed_part.encode(), hashlib.sha256).digest()
    return base64.b64encode(digest).decode()[:40]


def new_session_id() -> str:
    return base64.b32encode(secrets.token_bytes(10)).decode()


def mint_credentials(
    ring: KeyRing,
    *,
    principal: str,
    kind: PrincipalKind,
    account_id: str,
    aws_role: str,
    gateway_roles: tuple[str, ...],
    now: datetime,
    ttl: timedelta = DEFAULT_TTL,
    login_session: str | None = None,
    binding: str | None = None,
    job: tuple[tuple[str, str], ...] = (),
) -> GatewayCredentials:
    claims = Claims(
        session_id=new_session_id(),
        principal=principal,
        kind=kind,
        account_id=account_id,
        aws_role=aws_role,
        gateway_roles=gateway_roles,
        issued_at=now.replace(microsecond=0),
        expires_at=(now + ttl).replace(microsecond=0),
        login_session=login_session,
        binding=binding,
        job=job,
    )
    key = ring.current
    signed_part = f"{TOKEN_VERSION}.{key.kid}.{_b64(claims.to_json())}"
    mac = hmac.new(ring.mac_key(key.kid), signed_part.encode(), hashlib.sha256).digest()
    return GatewayCredentials(
        access_key_id=claims.access_key_id,
        secret_access_key=_derive_secret(ring, key.kid, signed_part),
        session_token=f"{signed_part}.{_b64(mac)}",
        claims=claims,
    )


def is_gateway_access_key(access_key_id: str) -> bool:
    return (
        len(access_key_id) == 20
        and access_key_id.startswith(ACCESS_KEY_PREFIX)
        and set(access_key_id[4:]) <= _B32
    )


def open_credentials(
    ring: KeyRing, access_key_id: str, session_token: str | None, *, now: datetime
) -> tuple[Claims, str]:
    """The claims and the secret access key of a credential, or the reason it is refused.

    Order matters for clear errors: an access key that is not ours is "unknown"; a token
    that is missing, forged or belongs to another key is "bad token"; only a genuine but old
    credential is "expired".
    """
    if not is_gateway_access_key(access_key_id):
        raise Refused(
            Reason.UNKNOWN_KEY,
            "The AWS Access Key Id you provided does not exist in our records.",
        )
    bad_token = Refused(Reason.BAD_TOKEN, "The security token included in the request is invalid.")
    if not session_token:
        raise bad_token
    parts = session_token.split(".")
    if len(parts) != 4 or parts[0] != TOKEN_VERSION or parts[1] not in ring:
        raise bad_token
    version, kid, body, mac_text = parts
    signed_part = f"{version}.{kid}.{body}"
    expected = hmac.new(ring.mac_key(kid), signed_part.encode(), hashlib.sha256).digest()
    try:
        mac = _unb64(mac_text)
        if not hmac.compare_digest(mac, expected):
            raise bad_token
        claims = Claims.from_json(_unb64(body))
    except (binascii.Error, ValueError, KeyError, TypeError):
        raise bad_token from None
    if not hmac.compare_digest(claims.access_key_id, access_key_id):
        raise bad_token
    if now >= claims.expires_at:
        raise Refused(
            Reason.EXPIRED_CREDENTIAL, "The security token included in the request is expired"
        )
    return claims, _derive_secret(ring, kid, signed_part)
