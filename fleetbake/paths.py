"""Where things live: the checkout's images/, the build/ output and the download cache."""

import os
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
IMAGES = ROOT / "images"


# Generated output lives beside its matrix (the checkout's matrix.yml: committed in images/ and packer/).
def generated_root(matrix) -> Path:
    return Path(matrix.path).resolve().parent


def image_dir(matrix, row) -> Path:
    """A row's generated build context: images/<family>/<row>/ (no host-specific files)."""
    return generated_root(matrix) / "images" / row.spec.family / row.name


def packer_dir(matrix) -> Path:
    """The generated Packer templates: packer/<row>/<target>/."""
    return generated_root(matrix) / "packer"


def build_dir() -> Path:
    return Path(os.environ.get("FLEETBAKE_BUILD_DIR", ROOT / "build"))


# Each kind of output has a folder of its own under build/, so that no matrix row
# name can land on another kind's files (reports, the master's secrets, ...).
def contexts_dir() -> Path:
    """Rendered build contexts, one folder per matrix row."""
    return build_dir() / "contexts"


def context_dir(row: str) -> Path:
    return contexts_dir() / row


def reports_dir() -> Path:
    """Verification records, one folder per image ID."""
    return build_dir() / "reports"


def cache_dir() -> Path:
    """Downloads kept between runs (CPython sources); survives `rm -rf build`."""
    default = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "fleetbake"
    return Path(os.environ.get("FLEETBAKE_CACHE", default))
