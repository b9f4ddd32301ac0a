# Generated from matrix.yml (row fedora-44) by fleetbake: do not edit. Change the matrix, images/ or fleetbake/worker/, then run `invoke render`.
"""The one atomic writer: readers see the old file (or folder) or the new one, never half of it.

Standard library only: worker images carry it too, for the entrypoint's health file.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
from pathlib import Path
from typing import Iterator


def write_file(target: Path, content: bytes, mode: int = 0o644, mtime: float | None = None,
               durable: bool = False) -> None:
    """`mtime`: the modification time the file carries (default: now), set before it replaces the old one.
    `durable`: on disk before it replaces the old file, so that a power cut too leaves one or the other."""
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.")
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(content)
            if durable:
                handle.flush()
                os.fsync(handle.fileno())
        os.chmod(tmp, mode)
        if mtime is not None:
            os.utime(tmp, (mtime, mtime))
        os.replace(tmp, target)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def write_text(target: Path, text: str, mode: int = 0o644, mtime: float | None = None, durable: bool = False) -> None:
    write_file(target, text.encode("utf-8"), mode, mtime, durable)


@contextlib.contextmanager
def staged_dir(target: Path, prefix: str = ".staged-") -> Iterator[Path]:
    """A fresh folder beside `target`, filled by the block; it replaces `target` only if the block completes."""
    target = Path(target)
    tmp = Path(tempfile.mkdtemp(dir=target.parent, prefix=prefix))
    try:
        yield tmp
        shutil.rmtree(target, ignore_errors=True)
        os.replace(tmp, target)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
