"""The Docker engine connection, with errors a person can act on."""

from __future__ import annotations

import functools
import hashlib
import io
import json
import tarfile
import tempfile

import docker
from docker.errors import DockerException

from fleetbake.errors import CannotBuildHere, FleetbakeError


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


def image_facts(image: str) -> dict | None:
    """What the engine says of an image for its record and page: size in bytes, creation time, labels."""
    try:
        attrs = client().images.get(image).attrs
    except (DockerException, EngineError):
        return None
    return {"size": attrs.get("Size"), "created": attrs.get("Created"),
            "labels": dict(sorted(((attrs.get("Config") or {}).get("Labels") or {}).items()))}


def containers_os() -> str:
    """What the engine runs: "linux" or "windows" containers."""
    return client().version().get("Os", "linux")


def require_os(row, doing: str, does: str) -> None:
    """Refuse a row whose containers this engine cannot run: a Windows row needs a Windows engine, the others Linux."""
    wanted = "windows" if row.spec.family == "windows" else "linux"
    have = containers_os()
    if have != wanted:
        raise CannotBuildHere(f"cannot {doing} here: {row.name} needs a {wanted.title()} Docker engine, this one runs "
                              f"{have} containers (the nightly workflow {does} it on {row.spec.runner})")


def save(image: str, target) -> str:
    """`docker save` of one image (by ID: no tag can move under it) to the file `target`; return the image ID."""
    try:
        found = client().images.get(image)
        with open(target, "wb") as handle:
            for chunk in found.save(named=False):
                handle.write(chunk)
    except docker.errors.ImageNotFound:
        raise EngineError(f"image {image} is not here (docker images lists what is)") from None
    except DockerException as exc:
        raise EngineError(f"image {image}: docker save failed: {exc}") from None
    return found.id


def load(archive, what: str) -> None:
    """`docker load` of an archive (bytes or an open file); its errors arrive in the stream, not as exceptions."""
    try:
        for entry in client().api.load_image(archive):
            if isinstance(entry, dict) and entry.get("error"):
                raise EngineError(f"{what}: docker load failed: {entry['error']}")
    except DockerException as exc:
        raise EngineError(f"{what}: docker load failed: {exc}") from None


def load_config(config: dict, tags: list[str], layers: list, what: str, scratch=None) -> str:
    """Load an image made of `config` under `tags`; return its ID (the digest of the config as written).

    `layers`: one entry per diff ID, the file holding that layer, or None for a layer the engine already
    has (docker load checks by chain ID first and never opens its file). The archive goes to a file in
    `scratch` when a layer is in it, else it stays in memory.
    """
    raw = json.dumps(config, sort_keys=True, separators=(",", ":")).encode()
    digest = hashlib.sha256(raw).hexdigest()
    names = [f"{index}/layer.tar" for index in range(len(layers))]
    manifest = json.dumps([{"Config": f"{digest}.json", "RepoTags": tags, "Layers": names}]).encode()
    with tempfile.TemporaryDirectory(dir=scratch) as work:
        target = f"{work}/image.tar" if any(layers) else io.BytesIO()
        with tarfile.open(target, "w") if isinstance(target, str) else tarfile.open(fileobj=target, mode="w") as archive:
            for name, data in ((f"{digest}.json", raw), ("manifest.json", manifest)):
                info = tarfile.TarInfo(name)
                info.size = len(data)
                archive.addfile(info, io.BytesIO(data))
            for name, layer in zip(names, layers):
                if layer is not None:
                    archive.add(layer, arcname=name)
        if isinstance(target, str):
            with open(target, "rb") as handle:
                load(handle, what)
        else:
            load(target.getvalue(), what)
    image = f"sha256:{digest}"
    if image_id(tags[0]) != image:
        raise EngineError(f"{what}: docker load did not give {tags[0]} the config's ID {image[:19]}")
    return image
