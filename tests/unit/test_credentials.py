"""Gateway credentials: minted by one replica, verified by any, refused for the right reason."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given
from hypothesis import strategies as st

from iamgate.identity.credentials import (
    KeyRing,
    ServerKey,
    mint_credentials,
    open_credentials,
)
from iamgate.refusals import Reason, Refused

NOW = datetime(2026, 11, 24, 12, 0, tzinfo=UTC)


def ring(*keys: ServerKey) -> KeyRing:
    keys = keys or (ServerKey.generate(),)
    return KeyRing({k.kid: k for k in keys}, keys[-1].kid)


def mint(r: KeyRing, **kw: object):  # type: ignore[no-untyped-def]
    args: dict[str, object] = dict(
        principal="dana",
        kind="user",
        account_id="111111111111",
        aws_role="ReadOnly",
        gateway_roles=("data-scientist",),
        now=NOW,
    )
    args.update(kw)
    return mint_credentials(r, **args)  # type: ignore[arg-type]


def test_minted_credentials_look_like_aws_session_credentials() -> None:
    creds = mint(ring())
    assert re.fullmatch(r"ASIA[A-Z2-7]{16}", creds.access_key_id)
    assert len(creds.secret_access_key) == 40
    out = creds.credential_process_json()
    assert out["Version"] == 1
    assert out["Expiration"] == "2026-11-24T13:00:00Z"


def test_any_replica_with_the_keyring_recovers_claims_and_secret() -> None:
    r = ring()
    creds = mint(r)
    replica = KeyRing({r.current.kid: ServerKey(r.current.kid, r.current.secret)}, r.current.kid)
    claims, secret = open_credentials(replica, creds.access_key_id, creds.session_token, now=NOW)
    assert secret == creds.secret_access_key
    assert (claims.principal, claims.account_id, claims.aws_role) == (
        "dana",
        "111111111111",
        "ReadOnly",
    )
    assert claims.gateway_roles == ("data-scientist",)


def test_old_keys_still_verify_after_rotation() -> None:
    old = ServerKey.generate()
    creds = mint(ring(old))
    rotated = ring(old, ServerKey.generate())
    assert rotated.current.kid != old.kid
    claims, _ = open_credentials(rotated, creds.access_key_id, creds.session_token, now=NOW)
    assert claims.principal == "dana"


def refusal(r: KeyRing, akid: str, token: str | None, now: datetime = NOW) -> Reason:
    with pytest.raises(Refused) as info:
        open_credentials(r, akid, token, now=now)
    return info.value.reason


def test_refusals_name_the_reason() -> None:
    r = ring()
    creds = mint(r)
    other = mint(r, principal="carl")
    assert refusal(r, "AKIAIOSFODNN7EXAMPLE", creds.session_token) is Reason.UNKNOWN_KEY
    assert refusal(r, creds.access_key_id, None) is Reason.BAD_TOKEN
    assert refusal(r, creds.access_key_id, other.session_token) is Reason.BAD_TOKEN
    assert refusal(ring(), creds.access_key_id, creds.session_token) is Reason.BAD_TOKEN
    expired = NOW + timedelta(hours=1)
    assert (
        refusal(r, creds.access_key_id, creds.session_token, expired) is Reason.EXPIRED_CREDENTIAL
    )


def test_claims_cannot_be_edited() -> None:
    r = ring()
    creds = mint(r)
    version, kid, _claims, mac = creds.session_token.split(".")
    forged = mint(r, aws_role="Admin").session_token.split(".")[2]
    assert refusal(r, creds.access_key_id, f"{version}.{kid}.{forged}.{mac}") is Reason.BAD_TOKEN


@given(st.text(max_size=300))
def test_garbage_tokens_are_refused_as_bad_tokens(token: str) -> None:
    r = ring()
    creds = mint(r)
    assert refusal(r, creds.access_key_id, token) is Reason.BAD_TOKEN
