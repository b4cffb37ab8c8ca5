"""Shares of the gateway per caller: taken, refused with throttling, and always given back."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from iamgate.config import ConfigError, parse_config
from iamgate.proxy.limits import CallLimits, Shares
from iamgate.refusals import Reason, Refused

MiB = 1024 * 1024


def limits(**kw: int) -> CallLimits:
    settings = {"calls_per_principal": 2, "unauthenticated_per_address": 2}
    settings |= {"unverified_bytes": 100, "unverified_bytes_per_address": 60} | kw
    return CallLimits(**settings)


def test_shares_per_key_and_in_all() -> None:
    shares = Shares(per_key=3, total=5)
    assert shares.take("a", 3)
    assert not shares.take("a")
    assert shares.take("b", 2)
    assert not shares.take("c")  # the total is reached, though c holds nothing
    shares.give_back("a", 3)
    assert shares.take("c")
    assert (shares.held("a"), shares.held("b"), shares.held()) == (0, 2, 3)
    with pytest.raises(ValueError, match="more than it holds"):
        shares.give_back("a")


def test_a_principal_over_its_cap_is_throttled_and_others_are_not() -> None:
    gate = limits()
    calls = [gate.admit("10.0.0.1") for _ in range(3)]
    calls[0].authenticated("dana")
    calls[1].authenticated("dana")
    with pytest.raises(Refused) as info:
        calls[2].authenticated("dana")
    assert info.value.reason is Reason.THROTTLED
    assert "dana already has 2 calls in flight" in info.value.message
    gate.admit("10.0.0.1").authenticated("carl")  # someone else is admitted
    calls[0].release()
    calls[2].authenticated("dana")  # a slot came free


def test_unauthenticated_requests_are_counted_per_address_until_authenticated() -> None:
    gate = limits()
    first, second, third = (gate.admit("192.0.2.7") for _ in range(3))
    first.unauthenticated()
    second.unauthenticated()
    with pytest.raises(Refused) as info:
        third.unauthenticated()
    assert info.value.reason is Reason.THROTTLED
    gate.admit("192.0.2.8").unauthenticated()  # another address is not affected
    first.authenticated("dana")  # the address's share goes back once it is known who
    third.unauthenticated()
    assert gate.addresses.held("192.0.2.7") == 2


def test_ipv6_addresses_count_per_64() -> None:
    gate = limits(unauthenticated_per_address=1)
    gate.admit("2001:db8:1:2::5").unauthenticated()
    with pytest.raises(Refused):
        gate.admit("2001:db8:1:2:ffff::9").unauthenticated()
    gate.admit("2001:db8:1:3::5").unauthenticated()


def test_unverified_bytes_are_bounded_per_address_and_in_all() -> None:
    gate = limits()
    a = gate.admit("192.0.2.1")
    a.unauthenticated()
    a.buffered(50)
    with pytest.raises(Refused) as info:
        a.buffered(11)  # over the address's 60
    assert info.value.reason is Reason.THROTTLED
    b = gate.admit("192.0.2.2")
    b.buffered(50)
    with pytest.raises(Refused):
        gate.admit("192.0.2.3").buffered(1)  # over the 100 in all
    a.authenticated("dana")  # verified: its bytes no longer count as unverified
    assert gate.unverified.held() == 50
    a.buffered(1_000)  # and what a verified caller reads is not counted here
    assert gate.unverified.held() == 50


@given(
    st.lists(
        st.tuples(
            st.sampled_from(["unauthenticated", "buffered", "authenticated", "release"]),
            st.sampled_from(["dana", "carl"]),
            st.integers(0, 40),
        ),
        max_size=30,
    ),
    st.integers(1, 4),
)
def test_release_gives_back_everything_whatever_happened(
    steps: list[tuple[str, str, int]], calls: int
) -> None:
    gate = limits()
    admissions = [gate.admit(f"192.0.2.{n % 2}") for n in range(calls)]
    for n, (step, principal, size) in enumerate(steps):
        admission = admissions[n % calls]
        try:
            if step == "unauthenticated":
                admission.unauthenticated()
            elif step == "buffered":
                admission.buffered(size)
            elif step == "authenticated":
                admission.authenticated(principal)
            else:
                admission.release()
        except Refused as refused:
            assert refused.reason is Reason.THROTTLED
        assert gate.principals.held() <= 2 * 2
        assert gate.unverified.held() <= 100
    for admission in admissions:
        admission.release()
        admission.release()  # twice is harmless
    assert (gate.principals.held(), gate.addresses.held(), gate.unverified.held()) == (0, 0, 0)


def test_the_limits_are_configured_under_server() -> None:
    config = parse_config(
        "server: {max_calls_per_principal: 8, upstream_connections: 16, "
        "request_head_timeout: 5s, max_unverified_body_bytes: 134217728}"
    )
    assert config.server.max_calls_per_principal == 8
    assert config.server.request_head_timeout.total_seconds() == 5
    assert config.server.body_timeout.total_seconds() == 20  # the default


@pytest.mark.parametrize(
    ("server", "expected"),
    [
        ("max_calls_per_principal: 300", "at most half of upstream_connections"),
        ("body_timeout: 0s", "server.body_timeout: Value error, must be longer"),
        ("max_unverified_body_bytes: 1024", "server.max_unverified_body_bytes"),
    ],
)
def test_limits_that_would_starve_someone_are_refused(server: str, expected: str) -> None:
    with pytest.raises(ConfigError, match=expected):
        parse_config(f"server:\n  {server}\n", source="<c>")
