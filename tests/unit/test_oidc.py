"""Web identity tokens: what a CI job's OIDC token must be before it becomes a bot's session,
and how a refusal tells the job's author what to fix."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
from datetime import UTC, datetime, timedelta
from typing import Any

import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from hypothesis import given
from hypothesis import strategies as st

from iamgate.identity.bindings import Binding, BindingRefused, bind, claim_text
from iamgate.identity.oidc import (
    KeySet,
    TokenRefused,
    TrustedIssuer,
    UnknownKey,
    token_issuer,
    verify_token,
)

ISSUER = "https://token.actions.githubusercontent.com"
NOW = datetime(2026, 12, 2, 12, 0, tzinfo=UTC)
RSA_KEY = rsa.generate_private_key(public_exponent=65537, key_size=2048)
EC_KEY = ec.generate_private_key(ec.SECP256R1())
TRUSTED = TrustedIssuer(ISSUER, audiences=("https://iamgate.example",))


def _jwk(key: Any, kid: str, algorithm: str) -> dict[str, Any]:
    family = (
        jwt.algorithms.RSAAlgorithm if algorithm.startswith("RS") else jwt.algorithms.ECAlgorithm
    )
    return {**json.loads(family.to_jwk(key.public_key())), "kid": kid, "use": "sig"}


KEYS = KeySet.from_jwks({"keys": [_jwk(RSA_KEY, "rsa-1", "RS256"), _jwk(EC_KEY, "ec-1", "ES256")]})
GITHUB_CLAIMS = {
    "iss": ISSUER,
    "aud": "https://iamgate.example",
    "sub": "repo:acme/infra:ref:refs/heads/main",
    "repository": "acme/infra",
    "repository_id": "123456789",
    "ref": "refs/heads/main",
    "environment": "production",
    "workflow": "deploy",
    "run_id": "987654",
}


def token(
    *,
    key: Any = RSA_KEY,
    kid: str = "rsa-1",
    algorithm: str = "RS256",
    lifetime: timedelta = timedelta(minutes=5),
    issued: datetime = NOW - timedelta(seconds=10),
    **claims: Any,
) -> str:
    payload = {
        **GITHUB_CLAIMS,
        "iat": int(issued.timestamp()),
        "nbf": int(issued.timestamp()),
        "exp": int((issued + lifetime).timestamp()),
        **claims,
    }
    payload = {k: v for k, v in payload.items() if v is not None}
    return jwt.encode(payload, key, algorithm=algorithm, headers={"kid": kid})


def refusal(text: str, *, issuer: TrustedIssuer = TRUSTED, now: datetime = NOW) -> TokenRefused:
    with pytest.raises(TokenRefused) as refused:
        verify_token(text, issuer, KEYS, now=now)
    return refused.value


def test_a_github_token_signed_by_the_issuer_gives_its_claims() -> None:
    for kid, key, algorithm in (("rsa-1", RSA_KEY, "RS256"), ("ec-1", EC_KEY, "ES256")):
        claims = verify_token(token(key=key, kid=kid, algorithm=algorithm), TRUSTED, KEYS, now=NOW)
        assert claims["repository"] == "acme/infra" and claims["ref"] == "refs/heads/main"


def _unsigned(header: dict[str, Any], payload: dict[str, Any], signature: bytes = b"") -> str:
    def part(data: bytes) -> str:
        return base64.urlsafe_b64encode(data).rstrip(b"=").decode()

    return ".".join(
        (part(json.dumps(header).encode()), part(json.dumps(payload).encode()), part(signature))
    )


def test_alg_none_is_never_accepted() -> None:
    payload = jwt.decode(token(), options={"verify_signature": False})
    forged = _unsigned({"alg": "none", "kid": "rsa-1", "typ": "JWT"}, payload)
    assert "algorithm 'none' is not allowed" in refusal(forged).message


def test_an_hmac_keyed_with_the_issuers_public_key_is_never_accepted() -> None:
    """The classic confusion: sign HS256 with the public key's PEM as the shared secret."""
    public_pem = RSA_KEY.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    payload = jwt.decode(token(), options={"verify_signature": False})
    header = {"alg": "HS256", "kid": "rsa-1", "typ": "JWT"}
    signing_input = _unsigned(header, payload).rsplit(".", 1)[0]
    mac = hmac.new(public_pem, signing_input.encode(), hashlib.sha256).digest()
    forged = signing_input + "." + base64.urlsafe_b64encode(mac).rstrip(b"=").decode()
    assert "algorithm 'HS256' is not allowed" in refusal(forged).message


def test_an_algorithm_the_issuer_is_not_trusted_for_is_refused() -> None:
    rsa_only = TrustedIssuer(ISSUER, audiences=TRUSTED.audiences, algorithms=("RS256",))
    refused = refusal(token(key=EC_KEY, kid="ec-1", algorithm="ES256"), issuer=rsa_only)
    assert "'ES256' is not allowed (allowed: RS256)" in refused.message


def test_a_key_of_another_type_than_the_algorithm_is_refused() -> None:
    """An RS256 header naming the issuer's EC key: the key does not fit the algorithm."""
    forged = token(kid="ec-1")
    assert "key 'ec-1' is not a key for RS256" in refusal(forged).message


def test_an_unknown_key_id_asks_for_a_refetch() -> None:
    other = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    with pytest.raises(UnknownKey) as unknown:
        verify_token(token(key=other, kid="rsa-2"), TRUSTED, KEYS, now=NOW)
    assert unknown.value.kid == "rsa-2"
    rotated = KeySet.from_jwks({"keys": [_jwk(other, "rsa-2", "RS256")]})
    assert verify_token(token(key=other, kid="rsa-2"), TRUSTED, rotated, now=NOW)["sub"]


def test_a_signature_by_another_key_under_a_known_kid_is_refused() -> None:
    other = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    assert "signature does not verify with key 'rsa-1'" in refusal(token(key=other)).message


def test_wrong_audience_and_issuer_are_named() -> None:
    assert (
        'Incorrect token audience: "sts.amazonaws.com"'
        in refusal(token(aud="sts.amazonaws.com")).message
    )
    assert f"issuer is not {ISSUER}" in refusal(token(iss="https://gitlab.com")).message


def test_an_expired_token_gets_expired_token_exception() -> None:
    refused = refusal(token(issued=NOW - timedelta(hours=1)))
    assert refused.code == "ExpiredTokenException"
    assert "current date/time 2026-12-02T12:00:00Z must be before" in refused.message


def test_a_token_not_yet_valid_or_issued_in_the_future_is_refused() -> None:
    later = NOW + timedelta(minutes=10)
    assert "issued in the future" in refusal(token(issued=later, nbf=None)).message
    assert "not valid before" in refusal(token(nbf=int(later.timestamp()))).message


def test_missing_claims_and_garbage_are_refused_clearly() -> None:
    assert "no 'sub' claim" in refusal(token(sub=None)).message
    assert "not a JSON Web Token" in refusal("not.a.token").message
    assert "longer than" in refusal("a" * 20_000).message
    assert token_issuer(token()) == ISSUER


@given(offset=st.integers(min_value=-600, max_value=600))
def test_the_time_window_holds_with_its_leeway(offset: int) -> None:
    """Valid from issue (less the leeway) until expiry (plus the leeway), never after."""
    issued = NOW - timedelta(minutes=5)
    text = token(issued=issued, lifetime=timedelta(minutes=5))  # expires at NOW
    at = NOW + timedelta(seconds=offset)
    leeway = TRUSTED.leeway.total_seconds()
    if -300 - leeway <= offset < leeway:
        assert verify_token(text, TRUSTED, KEYS, now=at)["sub"]
    else:
        with pytest.raises(TokenRefused):
            verify_token(text, TRUSTED, KEYS, now=at)


# -- bindings ------------------------------------------------------------------------------

MAIN = Binding(
    "ci-main",
    ISSUER,
    "deployer",
    {"repository": ("acme/infra",), "ref": ("refs/heads/main",)},
)
ANY_BRANCH = Binding("ci-tests", ISSUER, "tester", {"repository": ("acme/*",), "ref": ("refs/*",)})
NO_FORKS = Binding("no-forks", ISSUER, None, {"repository": ("*/infra-fork",)}, deny=True)


def test_the_binding_whose_claims_all_match_names_the_bot() -> None:
    assert bind(GITHUB_CLAIMS, ISSUER, [MAIN, NO_FORKS]).bot == "deployer"


def test_a_refusal_names_the_claim_and_the_binding() -> None:
    with pytest.raises(BindingRefused) as refused:
        bind({**GITHUB_CLAIMS, "ref": "refs/heads/feature"}, ISSUER, [MAIN])
    assert refused.value.message == (
        "claim `ref` is `refs/heads/feature`; binding `ci-main` requires `refs/heads/main`"
    )


def test_deny_bindings_win() -> None:
    claims = {**GITHUB_CLAIMS, "repository": "acme/infra-fork"}
    with pytest.raises(BindingRefused, match="binding `no-forks` denies"):
        bind(claims, ISSUER, [ANY_BRANCH, NO_FORKS])


def test_two_bots_for_one_token_is_refused_not_guessed() -> None:
    with pytest.raises(BindingRefused, match="more than one bot"):
        bind(GITHUB_CLAIMS, ISSUER, [MAIN, ANY_BRANCH])


def test_bindings_of_another_issuer_do_not_apply() -> None:
    with pytest.raises(BindingRefused, match=r"no binding trusts tokens from https://gitlab\.com"):
        bind(GITHUB_CLAIMS, "https://gitlab.com", [MAIN])


def test_missing_and_structured_claims_never_match() -> None:
    with pytest.raises(BindingRefused, match="no claim `job_workflow_ref`"):
        bind(GITHUB_CLAIMS, ISSUER, [Binding("env", ISSUER, "b", {"job_workflow_ref": ("x",)})])
    assert claim_text(["a"]) is None and claim_text(True) == "true" and claim_text(42) == "42"


claim_values = st.text(
    alphabet="abcdefghijklmnopqrstuvwxyz/-_.:0123456789", min_size=1, max_size=30
)


@given(
    claims=st.dictionaries(
        st.sampled_from(["sub", "ref", "repository", "environment"]), claim_values, min_size=1
    ),
    data=st.data(),
)
def test_a_binding_matches_exactly_when_every_listed_claim_does(
    claims: dict[str, str], data: st.DataObject
) -> None:
    exact = Binding("exact", ISSUER, "bot", {k: (v,) for k, v in claims.items()})
    assert bind(claims, ISSUER, [exact]) is exact
    changed = data.draw(st.sampled_from(sorted(claims)))
    other = claims[changed] + "x"
    with pytest.raises(BindingRefused) as refused:
        bind({**claims, changed: other}, ISSUER, [exact])
    assert f"claim `{changed}` is `{other}`" in refused.value.message
