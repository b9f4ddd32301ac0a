"""fleetbake/worker/hostport.py: the one host:port parser (entrypoint, preflight, service)."""

import pytest

from fleetbake.worker.hostport import parse_hostport


@pytest.mark.parametrize("value, expected", [
    ("master.example.org", ("master.example.org", 9020)),
    ("master.example.org:9989", ("master.example.org", 9989)),
    ("10.0.0.5", ("10.0.0.5", 9020)),
    ("[::1]:9989", ("::1", 9989)),
    ("[2001:db8::1]", ("2001:db8::1", 9020)),
    ("buildbot_master", ("buildbot_master", 9020)),  # Docker service names have underscores
    ("host.example.org.", ("host.example.org.", 9020)),
])
def test_good_addresses(value, expected):
    assert parse_hostport(value, 9020) == expected


@pytest.mark.parametrize("value, reason", [
    ("", "is empty"),
    ("::1", "needs brackets"),
    ("[::1", r"is not \[IPv6 address\]:port"),
    ("[nothost]:1", "is not an IPv6 address"),
    ("m:", "empty port"),
    (":9020", "empty host"),
    ("m:0", "from 1 to 65535"),
    ("m:65536", "from 1 to 65535"),
    ("m:٣", "from 1 to 65535"),  # a digit, but not ASCII
    ("999.1.1.1", "is not an IPv4 address"),
    ("bad host", "is not a host name"),
    ("-lead.example.org", "is not a host name"),
])
def test_bad_addresses_say_why(value, reason):
    with pytest.raises(ValueError, match=reason):
        parse_hostport(value, 9020)


def test_no_default_port_leaves_it_to_the_caller():
    assert parse_hostport("m", None) == ("m", None)
