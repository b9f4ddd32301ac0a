import time
import uuid

import docker
import pytest

from fleetbake.pipeline import build

TEST_LABEL = "io.fleetbake.test"
# Each test session cleans up only its own containers, never a concurrent session's.
SESSION = uuid.uuid4().hex


def pytest_collection_modifyitems(items):
    for item in items:
        if "/integration/" in str(item.fspath):
            item.add_marker(pytest.mark.docker)


@pytest.fixture(scope="session")
def client():
    engine = docker.from_env(timeout=600)
    engine.ping()
    yield engine
    for container in engine.containers.list(all=True, filters={"label": f"{TEST_LABEL}={SESSION}"}):
        container.remove(force=True, v=True)


@pytest.fixture(scope="session")
def image(client, live_project):
    """The debian-12 image, built through fleetbake (a no-op when setup already built it)."""
    [result] = build.build(live_project, live_project.select("debian-12"), log=print)
    return result


@pytest.fixture(scope="session")
def verified_image(image, live_project):
    """The debian-12 image with a passing pydebug record: setup's, or one verified here for real."""
    from fleetbake.pipeline import record, verify

    passed, failed = record.status(image.image_id)
    assert not failed, f"{image.image_id[:19]} has failing records: {failed}"
    if "pydebug" not in passed:
        [result] = verify.verify(live_project, live_project.rows["debian-12"], ["pydebug"], log=print)
        assert result.passed, result.reason
    return image


@pytest.fixture
def run(client):
    """Start a container labelled for cleanup; removed (with its volumes) after the test."""
    started = []

    def start(image, **kwargs):
        labels = {TEST_LABEL: SESSION, **kwargs.pop("labels", {})}
        container = client.containers.run(image, detach=True, labels=labels, **kwargs)
        started.append(container)
        return container

    yield start
    for container in started:
        try:
            container.remove(force=True, v=True)
        except docker.errors.NotFound:
            pass


def build_user(client, image) -> tuple[str, int]:
    """The image's build user and uid, as the image itself declares them (never a hard-coded 1000)."""
    from fleetbake.pipeline import verify

    name = verify.build_user(image.image_id)
    uid = client.containers.run(image.image_id, ["id", "-u", name], remove=True)
    return name, int(uid)


def wait_for_log(container, needle: str, timeout: float = 60) -> str:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        logs = container.logs().decode(errors="replace")
        if needle in logs:
            return logs
        container.reload()
        if container.status == "exited":
            break
        time.sleep(0.5)
    raise AssertionError(f"{needle!r} not in the logs of {container.name}:\n{container.logs().decode(errors='replace')[-3000:]}")


def unique_password() -> str:
    return f"pw-{uuid.uuid4().hex}"


def wait_connected(api, name, connected=True, timeout=120):
    started = time.monotonic()
    while time.monotonic() - started < timeout:
        if api.connected(name) == connected:
            return time.monotonic() - started
        time.sleep(0.5)
    raise AssertionError(f"{name} {'never connected' if connected else 'still connected'} after {timeout}s")
