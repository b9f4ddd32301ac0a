"""`invoke diff IMAGE_A IMAGE_B`: where two images differ, file by file.

First the config (each field that differs), then the layers in order: a layer with the same diff ID is the
same, byte for byte; in one that differs, every file that is in one image only, or whose content, mode,
owner, time or link target differs. For the first files whose content differs, diffoscope (Debian's
diffoscope-minimal) shows what differs inside them.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import subprocess
import tarfile
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from fleetbake import paths
from fleetbake.errors import FleetbakeError
from fleetbake.pipeline import engine

Log = Callable[[str], None]
DIFFOSCOPE_FILES = 3  # files whose insides diffoscope shows: the rest are listed
DIFFOSCOPE_LINES = 40


@dataclass(frozen=True)
class Entry:
    kind: str
    mode: int
    owner: str
    mtime: int
    link: str
    size: int
    sha256: str

    def differences(self, other: Entry) -> list[str]:
        found = []
        for name in ("kind", "mode", "owner", "mtime", "link", "size"):
            mine, theirs = getattr(self, name), getattr(other, name)
            if mine != theirs:
                found.append(f"{name} {oct(mine) if name == 'mode' else mine} != {oct(theirs) if name == 'mode' else theirs}")
        if self.sha256 != other.sha256:
            found.append("content")
        return found


def _read(archive: Path) -> tuple[dict, list[str]]:
    """The saved image's config and its layers' paths in the archive, in order."""
    with tarfile.open(archive) as tar:
        [manifest] = json.load(tar.extractfile("manifest.json"))
        return json.load(tar.extractfile(manifest["Config"])), list(manifest["Layers"])


def _entries(archive: Path, layer: str) -> dict[str, tuple[Entry, tarfile.TarInfo]]:
    found = {}
    with tarfile.open(archive) as outer, tarfile.open(fileobj=outer.extractfile(layer)) as tar:
        for member in tar:
            digest = ""
            if member.isfile():
                content, hashed = tar.extractfile(member), hashlib.sha256()
                for chunk in iter(lambda: content.read(1 << 20), b""):
                    hashed.update(chunk)
                digest = hashed.hexdigest()
            kind = {tarfile.DIRTYPE: "dir", tarfile.SYMTYPE: "symlink", tarfile.LNKTYPE: "hardlink"}.get(member.type, "file")
            found[member.name] = (Entry(kind, member.mode, f"{member.uid}:{member.gid}", int(member.mtime),
                                        member.linkname, member.size, digest), member)
    return found


def _flat(value, prefix: str = "") -> dict[str, object]:
    if isinstance(value, dict):
        return {k: v for key, item in value.items() for k, v in _flat(item, f"{prefix}.{key}" if prefix else key).items()}
    if isinstance(value, list) and prefix.startswith("history"):
        return {k: v for i, item in enumerate(value) for k, v in _flat(item, f"{prefix}[{i}]").items()}
    return {prefix: value}


def _short(value) -> str:
    text = json.dumps(value)
    return text if len(text) <= 100 else text[:97] + "..."


def _content(archive: Path, layer: str, member: tarfile.TarInfo, target: Path) -> Path:
    with tarfile.open(archive) as outer, tarfile.open(fileobj=outer.extractfile(layer)) as tar:
        target.write_bytes(tar.extractfile(member.name).read())
    return target


def diff(image_a: str, image_b: str, log: Log = print) -> bool:
    """Say where the two images differ; True when they are the same image."""
    scratch = paths.build_dir() / "tmp"
    scratch.mkdir(parents=True, exist_ok=True)
    found = [engine.image_id(image) for image in (image_a, image_b)]
    for image, image_id in zip((image_a, image_b), found):
        if image_id is None:
            raise FleetbakeError(f"image {image} is not here (docker images lists what is)")
    if found[0] == found[1]:
        log(f"same image: {image_a} and {image_b} are both {found[0][:19]}")
        return True
    if not shutil.which("diffoscope"):
        log("diffoscope is not installed (scripts/setup.sh installs diffoscope-minimal): files are listed, not opened")
    with tempfile.TemporaryDirectory(dir=scratch, prefix="diff-") as work:
        a, b = Path(work) / "a.tar", Path(work) / "b.tar"
        id_a, id_b = engine.save(image_a, a), engine.save(image_b, b)
        (config_a, layers_a), (config_b, layers_b) = _read(a), _read(b)
        log(f"{image_a} is {id_a[:19]}, {image_b} is {id_b[:19]}: they differ")
        flat_a, flat_b = _flat(config_a), _flat(config_b)
        for key in sorted(set(flat_a) | set(flat_b)):
            if flat_a.get(key) != flat_b.get(key):
                log(f"config {key}: {_short(flat_a.get(key))} != {_short(flat_b.get(key))}")
        diff_a, diff_b = config_a["rootfs"]["diff_ids"], config_b["rootfs"]["diff_ids"]
        shown = 0
        for index in range(max(len(diff_a), len(diff_b))):
            if index >= len(diff_a) or index >= len(diff_b):
                log(f"layer {index + 1}: only in {image_a if index < len(diff_a) else image_b}")
                continue
            if diff_a[index] == diff_b[index]:
                continue
            files_a, files_b = _entries(a, layers_a[index]), _entries(b, layers_b[index])
            changed = [name for name in sorted(set(files_a) | set(files_b))
                       if name not in files_a or name not in files_b or files_a[name][0] != files_b[name][0]]
            log(f"layer {index + 1} ({diff_a[index][:19]} != {diff_b[index][:19]}): {len(changed)} file(s) differ")
            for name in changed:
                if name not in files_b:
                    log(f"  /{name}: only in {image_a}")
                elif name not in files_a:
                    log(f"  /{name}: only in {image_b}")
                else:
                    entry_a, member_a = files_a[name]
                    entry_b, member_b = files_b[name]
                    what = entry_a.differences(entry_b) or ["order in the layer"]
                    log(f"  /{name}: {', '.join(what)}")
                    if entry_a.sha256 != entry_b.sha256 and shown < DIFFOSCOPE_FILES and shutil.which("diffoscope"):
                        shown += 1
                        left = _content(a, layers_a[index], member_a, Path(work) / f"a-{shown}")
                        right = _content(b, layers_b[index], member_b, Path(work) / f"b-{shown}")
                        try:
                            out = subprocess.run(["diffoscope", "--text", "-", "--no-progress", str(left), str(right)],
                                                 capture_output=True, text=True, timeout=300).stdout.splitlines()
                        except subprocess.TimeoutExpired:
                            out = ["(diffoscope took over 300 s on this file: left out)"]
                        for line in out[:DIFFOSCOPE_LINES]:
                            log(f"    {line}")
                        if len(out) > DIFFOSCOPE_LINES:
                            log(f"    ... ({len(out) - DIFFOSCOPE_LINES} more lines of diffoscope)")
        return False
