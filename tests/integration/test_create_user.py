"""create-user.sh in a real Debian base: a new, dedicated build user, or the build fails."""

import pytest

from conftest import ROOT

SCRIPT = ROOT / "images" / "common" / "scripts" / "create-user.sh"


def create(client, before="true", user="buildbot", uid=1000):
    """Run the provisioning step as the image build does (root, in the base), after `before`."""
    container = client.containers.run(
        "debian:12", ["bash", "-c", f"{before} && /create-user.sh && id {user} && stat -c '%U %a' /buildarea "
                                    f"&& passwd --status {user}"],
        environment={"WORKER_USER": user, "WORKER_UID": str(uid)},
        volumes={str(SCRIPT): {"bind": "/create-user.sh", "mode": "ro"}}, detach=True)
    try:
        code = container.wait(timeout=60)["StatusCode"]
        return code, container.logs().decode()
    finally:
        container.remove(force=True)


def test_a_new_user_gets_the_declared_uid_a_locked_password_and_the_buildarea(client):
    code, out = create(client)
    assert code == 0, out
    assert "uid=1000(buildbot) gid=1000(buildbot) groups=1000(buildbot)" in out
    assert "buildbot 750" in out and "buildbot L " in out  # L: password locked


@pytest.mark.parametrize("before, user, uid, message", [
    ("true", "root", 1000, "already has a user 'root' (0)"),
    ("useradd --uid 1001 buildbot", "buildbot", 1000, "already has a user 'buildbot' (1001)"),
    ("useradd --uid 1000 ubuntu", "buildbot", 1000, "uid/gid 1000 is taken in the base image's passwd by 'ubuntu'"),
    ("groupadd --gid 1000 staff2", "buildbot", 1000, "uid/gid 1000 is taken in the base image's group by 'staff2'"),
    ("groupadd buildbot", "buildbot", 1000, "already has a group 'buildbot'"),
])
def test_an_existing_name_or_uid_fails_the_build(client, before, user, uid, message):
    code, out = create(client, before, user, uid)
    assert code == 1, out
    assert message in out, out
