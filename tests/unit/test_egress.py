"""The egress policy of webhooks: host patterns, private ranges, URL and address checks."""

from __future__ import annotations

import ipaddress
from ipaddress import IPv4Address, IPv4Network, IPv6Address, IPv6Network

import pytest
from hypothesis import given
from hypothesis import strategies as st

from server.egress import (
    EgressPolicy,
    IPAddress,
    is_private_address,
    parse_egress_policy,
    parse_webhook_config,
)
from voicebot.errors import ConfigError

__all__: list[str] = []

# Where we are stricter than the standard library's is_global, on purpose (module doc).
_EXTRA_PRIVATE = [ipaddress.ip_network(net) for net in (
    "192.0.0.0/24", "192.88.99.0/24", "224.0.0.0/4", "::/96", "64:ff9b:1::/48",
    "2001::/23", "3fff::/20", "5f00::/16", "fec0::/10", "ff00::/8")]
_INTERESTING = [*_EXTRA_PRIVATE, *(ipaddress.ip_network(net) for net in (
    "0.0.0.0/8", "10.0.0.0/8", "100.64.0.0/10", "127.0.0.0/8", "169.254.0.0/16",
    "172.16.0.0/12", "192.168.0.0/16", "198.18.0.0/15", "240.0.0.0/4", "8.0.0.0/7",
    "fc00::/7", "fe80::/10", "2001:db8::/32", "100::/64", "2000::/3", "::ffff:0:0/96",
    "2002::/16", "64:ff9b::/96"))]

label = st.from_regex(r"[a-z0-9]([a-z0-9-]{0,8}[a-z0-9])?", fullmatch=True)
domain = st.lists(label, min_size=1, max_size=3).map(".".join)


@st.composite
def addresses(draw: st.DrawFn) -> IPAddress:
    """Any address, often inside one of the special ranges or just next to one."""
    kind = draw(st.sampled_from(["v4", "v6", "range"]))
    if kind == "v4":
        return IPv4Address(draw(st.integers(0, 2**32 - 1)))
    if kind == "v6":
        return IPv6Address(draw(st.integers(0, 2**128 - 1)))
    net = draw(st.sampled_from(_INTERESTING))
    top = 2**32 - 1 if net.version == 4 else 2**128 - 1
    value = int(net.network_address) + draw(st.integers(-1, net.num_addresses))
    value = min(max(value, 0), top)
    return IPv4Address(value) if net.version == 4 else IPv6Address(value)


def _embeds_ipv4(address: IPAddress) -> bool:
    return isinstance(address, IPv6Address) and (
        address.ipv4_mapped is not None or address.sixtofour is not None
        or address in IPv6Network("64:ff9b::/96"))


# ------------------------------------------------------------------ private ranges


@pytest.mark.parametrize("text", [
    "169.254.169.254", "10.1.2.3", "172.31.255.255", "192.168.0.1", "127.0.0.1",
    "100.64.0.1", "0.0.0.0", "224.0.0.1", "255.255.255.255", "::1", "::", "fd00::1",
    "fe80::1", "ff02::1", "::ffff:10.0.0.1", "::ffff:169.254.169.254", "2002:a00:1::",
    "64:ff9b::7f00:1", "fec0::1"])
def test_private_examples(text: str) -> None:
    assert is_private_address(ipaddress.ip_address(text))


@pytest.mark.parametrize("text", [
    "8.8.8.8", "1.1.1.1", "93.184.216.34", "2606:4700:4700::1111", "2a00:1450::1",
    "::ffff:8.8.8.8", "64:ff9b::808:808", "2002:808:808::"])
def test_public_examples(text: str) -> None:
    assert not is_private_address(ipaddress.ip_address(text))


@given(addresses())
def test_everything_the_stdlib_calls_non_global_is_private(address: IPAddress) -> None:
    if not _embeds_ipv4(address) and (not address.is_global or address.is_multicast):
        assert is_private_address(address)


@given(addresses())
def test_private_is_the_stdlib_non_global_plus_documented_extras(address: IPAddress) -> None:
    if is_private_address(address) and not _embeds_ipv4(address):
        assert (not address.is_global or address.is_multicast
                or any(address in net for net in _EXTRA_PRIVATE))


@given(st.integers(0, 2**32 - 1).map(IPv4Address))
def test_ipv6_forms_of_an_ipv4_address_are_judged_by_it(v4: IPv4Address) -> None:
    expected = is_private_address(v4)
    mapped = IPv6Address(f"::ffff:{v4}")
    nat64 = IPv6Address(int(IPv6Address("64:ff9b::")) | int(v4))
    sixtofour = IPv6Address((0x2002 << 112) | (int(v4) << 80))
    assert is_private_address(mapped) is expected
    assert is_private_address(nat64) is expected
    assert is_private_address(sixtofour) is expected


@given(st.sampled_from([IPv4Network("10.0.0.0/8"), IPv4Network("169.254.0.0/16"),
                        IPv4Network("100.64.0.0/10"), IPv6Network("fc00::/7"),
                        IPv6Network("fe80::/10")]), st.data())
def test_every_address_of_a_private_range_is_private(
        net: IPv4Network | IPv6Network, data: st.DataObject) -> None:
    offset = data.draw(st.integers(0, net.num_addresses - 1))
    assert is_private_address(net.network_address + offset)


# ------------------------------------------------------------------ host matching


@given(domain, label)
def test_wildcard_matches_names_below_the_domain_only(base: str, sub: str) -> None:
    policy = EgressPolicy(allowed_hosts=(f"*.{base}",))
    assert policy.host_allowed(f"{sub}.{base}")
    assert policy.host_allowed(f"a.{sub}.{base}".upper())
    assert not policy.host_allowed(base)
    assert not policy.host_allowed(f"{sub}{base}")  # evilexample.com is not example.com
    if not f"{base}.{sub}".endswith(f".{base}"):
        assert not policy.host_allowed(f"{base}.{sub}")


@given(domain, domain)
def test_exact_host_matches_itself_only(host: str, other: str) -> None:
    policy = EgressPolicy(allowed_hosts=(host.upper(),))
    assert policy.host_allowed(host) and policy.host_allowed(f"{host}.")
    assert policy.host_allowed(other) is (other == host)
    assert not policy.host_allowed(f"x.{host}")


@given(domain)
def test_empty_allow_list_allows_any_host(host: str) -> None:
    assert EgressPolicy().host_allowed(host)


# ------------------------------------------------------------------ checks


@pytest.mark.parametrize(("url", "reason"), [
    ("ftp://hooks.example.com/x", "scheme 'ftp' is not allowed"),
    ("hooks.example.com/x", "scheme '(none)' is not allowed"),
    ("http:///x", "the URL has no host"),
    ("http://hooks.example.com:99999/", "the URL is malformed"),
    ("https://evil.example.net/x", "host evil.example.net is not allowed"),
    ("https://169.254.169.254/latest", "host 169.254.169.254 is not allowed"),
    ("https://hooks.exämple.com/", "not ASCII"),
])
def test_check_url_refuses(url: str, reason: str) -> None:
    policy = EgressPolicy(allowed_hosts=("hooks.example.com", "*.example.org", "169.254.0.1"))
    refused = policy.check_url(url)
    assert refused is not None and reason in refused


def test_check_url_private_literals() -> None:
    assert EgressPolicy().check_url("http://[::1]:8080/x") == "host ::1 is a private address"
    assert EgressPolicy().check_url("http://10.0.0.1/") == "host 10.0.0.1 is a private address"
    assert EgressPolicy(allow_private=True).check_url("http://10.0.0.1/") is None
    assert EgressPolicy().check_url("https://Hooks.Example.com/x?y=1") is None
    assert EgressPolicy(schemes=("https",)).check_url("http://example.com/") is not None


def test_check_addresses() -> None:
    policy = EgressPolicy()
    assert policy.check_addresses("h", ["93.184.216.34", "2606:4700::1"]) is None
    assert policy.check_addresses("h", []) == "host h resolved to no address"
    assert "not an IP address" in (policy.check_addresses("h", ["nope"]) or "")
    mixed = policy.check_addresses("h", ["93.184.216.34", "169.254.169.254"])
    assert mixed == "host h resolves to the private address 169.254.169.254"
    assert policy.check_addresses("h", ["fe80::1%eth0"]) is not None
    assert EgressPolicy(allow_private=True).check_addresses("h", ["127.0.0.1"]) is None


# ------------------------------------------------------------------ configuration


def test_parse_policy() -> None:
    policy = parse_egress_policy({"allowed_hosts": ["Hooks.Example.com", "*.crm.example"],
                                  "allow_private": False, "schemes": ["https"],
                                  "max_redirects": 0, "headers": {}})
    assert policy == EgressPolicy(allowed_hosts=("hooks.example.com", "*.crm.example"),
                                  schemes=("https",), max_redirects=0)
    assert parse_egress_policy({}) == EgressPolicy()


@pytest.mark.parametrize(("data", "message"), [
    ({"allowed_hosts": "a.example.com b.example.com", "allow_private": "yes"},
     "allow_private must be true or false"),
    ({"allowed_hosts": [1]}, "allowed_hosts must be a list of strings"),
    ({"allowed_hosts": ["a.*.example.com"]}, "not a host name"),
    ({"allowed_hosts": ["https://a.example.com"]}, "not a host name"),
    ({"allowed_hosts": ["a.example.com:443"]}, "not a host name"),
    ({"schemes": ["ftp"]}, "schemes must be among"),
    ({"max_redirects": -1}, "max_redirects must not be negative"),
    ({"max_redirects": "3"}, "max_redirects must be a whole number"),
])
def test_parse_policy_errors(data: dict[str, object], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        parse_egress_policy(data)


def test_parse_webhook_config_headers_from_env() -> None:
    config = parse_webhook_config(
        {"allowed_hosts": ["hooks.example.com"], "headers": {"X-Tenant": "acme"},
         "headers_env": {"Authorization": "HOOK_AUTH"}},
        {"HOOK_AUTH": "Bearer s3cret"})
    assert config.headers == {"X-Tenant": "acme", "Authorization": "Bearer s3cret"}
    assert "s3cret" not in repr(config)
    assert parse_webhook_config(None, {}).policy == EgressPolicy()


@pytest.mark.parametrize(("data", "message"), [
    ({"allowed_host": []}, "unknown key webhooks.allowed_host"),
    ({"headers_env": {"Authorization": "MISSING"}}, "MISSING is not set"),
    ({"headers": {"Bad Name": "x"}}, "is not a header name"),
    ({"headers": {"Host": "x"}}, "is set by voicebot"),
    ({"headers": {"X-A": "a\r\nX-B: b"}}, "one line"),
    ({"headers": {"X-A": 1}}, "must be a string"),
    ({"headers": ["X-A"]}, "must map a header name"),
])
def test_parse_webhook_config_errors(data: dict[str, object], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        parse_webhook_config(data, {})
