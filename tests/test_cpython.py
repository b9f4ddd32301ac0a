import io
import subprocess
import tarfile

import pytest

from fleetbake.errors import UsageError
from fleetbake.pipeline import cpython

PATCHLEVEL = b'#define PY_VERSION              "3.14.0a1+"\n'


def make_tree(root):
    (root / "Include").mkdir(parents=True)
    (root / "Include" / "patchlevel.h").write_bytes(PATCHLEVEL)
    (root / "configure").write_text("#!/bin/sh\n")
    return root


def make_tarball(path, top="Python-3.14.0a1"):
    with tarfile.open(path, "w:gz") as archive:
        for name, data in ((f"{top}/configure", b"#!/bin/sh\n"), (f"{top}/Include/patchlevel.h", PATCHLEVEL)):
            info = tarfile.TarInfo(name)
            info.size = len(data)
            archive.addfile(info, io.BytesIO(data))
    return path


def test_directory_and_tarball_sources(tmp_path):
    tree = cpython.resolve(str(make_tree(tmp_path / "cpython")), log=lambda _: None)
    assert tree.version == "3.14.0a1+" and tree.version_tuple == (3, 14) and not tree.is_tarball
    tarball = cpython.resolve(str(make_tarball(tmp_path / "Python.tgz")), log=lambda _: None)
    assert tarball.is_tarball and tarball.version == "3.14.0a1+" and len(tarball.sha256) == 64


@pytest.mark.parametrize("spec, message", [
    ("/nonexistent/source", "not a directory, tarball"),
    ("git:main;rm", "not a valid git ref"),
    ("debian:bookworm/perl", "expected debian:SUITE/python3.N"),
])
def test_bad_sources(spec, message):
    with pytest.raises(UsageError, match=message):
        cpython.resolve(spec, log=lambda _: None)


def test_a_non_cpython_tarball_is_refused(tmp_path):
    path = tmp_path / "other.tar"
    with tarfile.open(path, "w") as archive:
        info = tarfile.TarInfo("other/README")
        archive.addfile(info, io.BytesIO(b""))
    with pytest.raises(UsageError, match="not a CPython release tarball"):
        cpython.resolve(str(path), log=lambda _: None)
    (tmp_path / "junk.tar").write_text("junk")
    with pytest.raises(UsageError, match="not a readable tarball"):
        cpython.resolve(str(tmp_path / "junk.tar"), log=lambda _: None)


def test_git_refs_are_fetched_once_and_cached(tmp_path, monkeypatch):
    repo = make_tree(tmp_path / "upstream")
    for command in (["init", "-q"], ["add", "-A"], ["-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", "x"], ["tag", "v3.14.0a1"]):
        subprocess.run(["git", "-C", str(repo), *command], check=True)
    monkeypatch.setenv("FLEETBAKE_CPYTHON_GIT", f"file://{repo}")
    monkeypatch.setenv("FLEETBAKE_CACHE", str(tmp_path / "cache"))
    messages = []
    first = cpython.resolve("git:v3.14.0a1", log=messages.append)
    assert first.version == "3.14.0a1+" and (first.path / "configure").is_file()
    second = cpython.resolve("git:v3.14.0a1", log=messages.append)
    assert second.path == first.path and "cached" in messages[-1]
