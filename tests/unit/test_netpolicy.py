"""Network rules of the handshake: source networks, X-Forwarded-For, Origin, rate limit."""

from __future__ import annotations

import ipaddress

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from server.netpolicy import (
    HandshakeRequest,
    NetworkPolicy,
    RateLimitConfig,
    RateLimiter,
    check_network,
    client_ip,
    normalize_origin,
    origin_allowed,
    parse_ip,
    parse_network_policy,
    parse_networks,
    public_host,
    rate_key,
)
from voicebot.errors import ConfigError

__all__: list[str] = []

PROXIES = parse_networks(["10.0.0.0/8", "2001:db8:1::/48"], key="t")


def _request(peer: str = "203.0.113.7", *headers: tuple[str, str], path: str = "/native",
             tls: bool = False) -> HandshakeRequest:
    return HandshakeRequest.from_target(path, [("Host", "bot.example.com"), *headers],
                                        peer_ip=peer, tls=tls)


# ------------------------------------------------------------------ parsing


def test_parse_networks_ipv4_ipv6_and_bare_addresses() -> None:
    networks = parse_networks("192.0.2.0/24, 2001:db8::/32 198.51.100.9", key="k")
    assert [str(n) for n in networks] == ["192.0.2.0/24", "2001:db8::/32", "198.51.100.9/32"]
    assert parse_networks(None, key="k") == ()


@pytest.mark.parametrize("bad", [["10.0.0.1/8"], ["not-a-net"], ["300.1.1.1"], 42])
def test_parse_networks_rejects_bad_values_naming_the_key(bad: object) -> None:
    with pytest.raises(ConfigError, match=r"auth\.allowed_networks"):
        parse_networks(bad, key="auth.allowed_networks")


def test_parse_ip_normalizes_mapped_bracketed_and_zoned() -> None:
    assert parse_ip("::ffff:192.0.2.1") == ipaddress.ip_address("192.0.2.1")
    assert parse_ip("[2001:db8::1]") == ipaddress.ip_address("2001:db8::1")
    assert parse_ip("fe80::1%eth0") == ipaddress.ip_address("fe80::1")
    assert parse_ip("") is None
    assert parse_ip("example.com") is None


def test_parse_network_policy() -> None:
    policy = parse_network_policy({
        "allowed_networks": ["192.0.2.0/24"], "trusted_proxies": ["10.0.0.0/8"],
        "allowed_origins": ["HTTPS://App.Example.com:443/"],
        "rate_limit": {"max_new_connections_per_s": 2, "burst": 5}})
    assert policy.allowed_origins == frozenset({"https://app.example.com"})
    assert policy.rate_limit == RateLimitConfig(2.0, 5, 10_000)
    assert parse_network_policy({}) == NetworkPolicy()


@pytest.mark.parametrize("data, match", [
    ({"allowed_origins": ["not an origin"]}, "allowed_origins"),
    ({"allowed_origins": "https://a.example"}, "allowed_origins"),
    ({"rate_limit": {"burst": 3}}, "max_new_connections_per_s"),
    ({"rate_limit": {"max_new_connections_per_s": 0}}, "positive"),
    ({"rate_limit": {"max_new_connections_per_s": 1, "burst": 0}}, "at least 1"),
    ({"rate_limit": {"max_new_connections_per_s": 1, "brust": 3}}, "brust"),
    ({"rate_limit": {"max_new_connections_per_s": "fast"}}, "rate_limit"),
    ({"rate_limit": 5}, "mapping"),
])
def test_parse_network_policy_errors(data: dict[str, object], match: str) -> None:
    with pytest.raises(ConfigError, match=match):
        parse_network_policy(data)


# ------------------------------------------------------------------ X-Forwarded-For


def test_xff_ignored_from_an_untrusted_peer() -> None:
    assert str(client_ip("203.0.113.7", ["198.51.100.1"], PROXIES)) == "203.0.113.7"


def test_xff_from_trusted_proxy_takes_rightmost_untrusted() -> None:
    # client-forged left entry, real client, then an inner trusted proxy
    xff = ["6.6.6.6, 198.51.100.20", "10.1.2.3"]
    assert str(client_ip("10.0.0.5", xff, PROXIES)) == "198.51.100.20"


def test_xff_ipv6_and_all_trusted_chain() -> None:
    assert str(client_ip("2001:db8:1::5", ["2001:db8:2::9"], PROXIES)) == "2001:db8:2::9"
    assert str(client_ip("10.0.0.5", ["10.0.0.9, 10.0.0.8"], PROXIES)) == "10.0.0.9"
    assert str(client_ip("10.0.0.5", [], PROXIES)) == "10.0.0.5"


def test_xff_garbage_makes_the_caller_unknown() -> None:
    assert client_ip("10.0.0.5", ["198.51.100.1, bogus"], PROXIES) is None
    assert client_ip("not-an-ip", [], PROXIES) is None


def test_forwarded_host_and_proto_only_from_trusted_proxies() -> None:
    policy = NetworkPolicy(trusted_proxies=PROXIES)
    headers = (("X-Forwarded-Host", "public.example.com"), ("X-Forwarded-Proto", "https"))
    assert public_host(_request("10.0.0.5", *headers), policy) == ("public.example.com", True)
    assert public_host(_request("203.0.113.7", *headers), policy) == ("bot.example.com", False)
    assert public_host(_request("203.0.113.7", tls=True), policy) == ("bot.example.com", True)


# ------------------------------------------------------------------ Origin


def test_normalize_origin() -> None:
    assert normalize_origin("HTTPS://Bot.Example.com:443") == "https://bot.example.com"
    assert normalize_origin("http://bot.example.com:8080/") == "http://bot.example.com:8080"
    assert normalize_origin("http://[2001:DB8::1]:80") == "http://[2001:db8::1]"
    assert normalize_origin("null") is None
    assert normalize_origin("https://user:pw@x.example") is None


def test_origin_rules() -> None:
    own = ["https://bot.example.com"]
    allowed = frozenset({"https://console.example.com"})
    assert origin_allowed(None, own_origins=own, allowed_origins=allowed)
    assert origin_allowed("https://bot.example.com", own_origins=own, allowed_origins=allowed)
    assert origin_allowed("https://console.example.com", own_origins=own,
                          allowed_origins=allowed)
    assert not origin_allowed("https://evil.example", own_origins=own, allowed_origins=allowed)
    assert not origin_allowed("http://bot.example.com", own_origins=own,
                              allowed_origins=allowed)  # scheme differs
    assert not origin_allowed("null", own_origins=own, allowed_origins=allowed)


def test_check_network_origin_uses_host_scheme_and_public_url() -> None:
    policy = NetworkPolicy()
    same = _request("203.0.113.7", ("Origin", "https://bot.example.com"), tls=True)
    assert check_network(same, policy, public_url=None, now_s=0)[1] is None
    plain = _request("203.0.113.7", ("Origin", "https://bot.example.com"))
    assert check_network(plain, policy, public_url=None, now_s=0)[1] == (403,
                                                                          "origin not allowed")
    assert check_network(plain, policy, public_url="wss://bot.example.com", now_s=0)[1] is None
    evil = _request("203.0.113.7", ("Origin", "https://evil.example"), tls=True)
    assert check_network(evil, policy, public_url=None, now_s=0)[1] == (403,
                                                                         "origin not allowed")
    assert check_network(_request(), policy, public_url=None, now_s=0)[1] is None  # no Origin


# ------------------------------------------------------------------ source networks


def test_allow_list_with_trusted_proxy() -> None:
    policy = NetworkPolicy(allowed_networks=parse_networks(["198.51.100.0/24",
                                                            "2001:db8:9::/48"], key="t"),
                           trusted_proxies=PROXIES)
    ok = _request("10.0.0.5", ("X-Forwarded-For", "198.51.100.20"))
    assert check_network(ok, policy, public_url=None, now_s=0) == (
        ipaddress.ip_address("198.51.100.20"), None)
    assert check_network(_request("2001:db8:9::1"), policy, public_url=None, now_s=0)[1] is None
    # an outsider behind the proxy; an outsider forging XFF directly; an unknown caller
    for request in (_request("10.0.0.5", ("X-Forwarded-For", "203.0.113.9")),
                    _request("203.0.113.9", ("X-Forwarded-For", "198.51.100.20")),
                    _request("10.0.0.5", ("X-Forwarded-For", "junk"))):
        assert check_network(request, policy, public_url=None, now_s=0)[1] == (
            403, "source address not allowed")


# ------------------------------------------------------------------ rate limit


def test_rate_limiter_burst_then_refill() -> None:
    limiter = RateLimiter(RateLimitConfig(max_new_connections_per_s=2, burst=3))
    assert [limiter.allow("a", 100.0) for _ in range(4)] == [True, True, True, False]
    assert limiter.allow("b", 100.0)  # other sources are independent
    assert not limiter.allow("a", 100.4)  # 0.8 token
    assert limiter.allow("a", 100.5)  # 1.0 token
    assert [limiter.allow("a", 1000.0) for _ in range(4)] == [True, True, True, False]


def test_rate_limiter_clock_going_backwards_refills_nothing() -> None:
    limiter = RateLimiter(RateLimitConfig(max_new_connections_per_s=1, burst=1))
    assert limiter.allow("a", 50.0)
    assert not limiter.allow("a", 10.0)
    assert not limiter.allow("a", 50.5)
    assert limiter.allow("a", 51.0)


def test_rate_limiter_memory_is_bounded_lru() -> None:
    limiter = RateLimiter(RateLimitConfig(max_new_connections_per_s=1, burst=1, max_sources=3))
    for source in "abcd":
        assert limiter.allow(source, 0.0)
    assert len(limiter) == 3
    assert limiter.allow("a", 0.0)  # "a" was evicted: it starts again with a full bucket
    assert not limiter.allow("d", 0.0)  # "d" is remembered


def test_rate_key_groups_ipv6_by_64() -> None:
    assert rate_key(ipaddress.ip_address("2001:db8::1"), "x") == \
        rate_key(ipaddress.ip_address("2001:db8::ffff:1"), "x") == "2001:db8::/64"
    assert rate_key(ipaddress.ip_address("192.0.2.1"), "x") == "192.0.2.1"
    assert rate_key(None, "peer") == "peer:peer"


def test_check_network_rate_limits_per_source() -> None:
    policy = NetworkPolicy(rate_limit=RateLimitConfig(1, 2))
    limiter = RateLimiter(RateLimitConfig(1, 2))
    results = [check_network(_request(), policy, public_url=None, now_s=5, limiter=limiter)[1]
               for _ in range(3)]
    assert results == [None, None, (429, "too many new connections from this source")]
    other = _request("198.51.100.1")
    assert check_network(other, policy, public_url=None, now_s=5, limiter=limiter)[1] is None


@settings(max_examples=200, deadline=None)
@given(rate=st.floats(min_value=0.1, max_value=50), burst=st.integers(1, 20),
       events=st.lists(st.tuples(st.floats(min_value=0, max_value=5),
                                 st.integers(0, 4)), max_size=200))
def test_rate_limiter_never_admits_more_than_burst_plus_rate_times_elapsed(
        rate: float, burst: int, events: list[tuple[float, int]]) -> None:
    limiter = RateLimiter(RateLimitConfig(rate, burst, max_sources=5))
    now_s, admitted, first_s = 1000.0, dict.fromkeys(range(5), 0), dict[int, float]()
    for gap_s, source in events:
        now_s += gap_s
        first_s.setdefault(source, now_s)
        if limiter.allow(str(source), now_s):
            admitted[source] += 1
        assert admitted[source] <= burst + rate * (now_s - first_s[source]) + 1e-6
        assert len(limiter) <= 5


@settings(max_examples=50, deadline=None)
@given(st.lists(st.integers(0, 10_000), max_size=300), st.integers(1, 50))
def test_rate_limiter_memory_never_exceeds_cap(sources: list[int], cap: int) -> None:
    limiter = RateLimiter(RateLimitConfig(1, 1, max_sources=cap))
    for i, source in enumerate(sources):
        limiter.allow(str(source), float(i))
        assert len(limiter) <= cap
