"""fleetbake/worker/fleet.py: the fleet master's address and Buildbot's rule for worker names."""

import pytest

from fleetbake.worker import fleet


@pytest.mark.parametrize("name", ["cstratak-fedora", "w_1", "-x", "a" * 50])
def test_names_buildbot_accepts(name):
    assert fleet.is_worker_name(name)


@pytest.mark.parametrize("name", ["", "1worker", "has space", "dot.ted", "a" * 51, "ünï", None])
def test_names_buildbot_refuses(name):
    assert not fleet.is_worker_name(name)


def test_the_default_address_is_the_fleet_masters():
    assert fleet.DEFAULT_ADDRESS == "buildbot-api.python.org:9020"
