"""The Docker engine connection, with errors a person can act on."""

from __future__ import annotations

import functools

import docker
from docker.errors import DockerException

from fleetbake.errors import FleetbakeError


class EngineError(FleetbakeError):
    pass


@functools.cache
def client() -> docker.DockerClient:
    try:
        engine = docker.from_env(timeout=300)
        engine.ping()
    except DockerException as exc:
        reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise EngineError(
            f"cannot reach the Docker engine ({reason}); run scripts/setup.sh, "
            "which installs docker.io and starts dockerd"
        ) from None
    return engine


def image_id(name: str) -> str | None:
    """The local image ID for a reference, or None if it is not in the local cache."""
    try:
        return client().images.get(name).id
    except docker.errors.ImageNotFound:
        return None


def image_env(image: str) -> dict[str, str]:
    """The environment an image's config declares (its ENV lines)."""
    config = client().images.get(image).attrs.get("Config") or {}
    return dict(item.split("=", 1) for item in config.get("Env") or [] if "=" in item)
