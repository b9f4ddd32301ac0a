"""Where things live: the checkout's images/, the build/ output and the download cache."""

import os
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
IMAGES = ROOT / "images"


def build_dir() -> Path:
    return Path(os.environ.get("FLEETBAKE_BUILD_DIR", ROOT / "build"))


def reports_dir() -> Path:
    return build_dir() / "reports"


def cache_dir() -> Path:
    """Downloads kept between runs (CPython sources); survives `rm -rf build`."""
    default = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "fleetbake"
    return Path(os.environ.get("FLEETBAKE_CACHE", default))
