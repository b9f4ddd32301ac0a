"""fleetbake/files.py: the one atomic writer."""

import os

import pytest

from fleetbake import files


def test_writes_whole_files_with_the_mode_asked(tmp_path):
    target = tmp_path / "deep" / "secret.txt"
    files.write_text(target, "one\n", 0o600)
    assert target.read_text() == "one\n" and (target.stat().st_mode & 0o777) == 0o600
    files.write_file(target, b"two\n")
    assert target.read_bytes() == b"two\n" and (target.stat().st_mode & 0o777) == 0o644


def test_a_failed_write_keeps_the_old_file_and_leaves_no_temporary(tmp_path, monkeypatch):
    target = tmp_path / "kept.txt"
    target.write_text("old\n")

    def broken(*args):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "replace", broken)
    with pytest.raises(OSError):
        files.write_text(target, "new\n")
    assert target.read_text() == "old\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["kept.txt"]


def test_a_symlink_in_place_is_replaced_not_followed(tmp_path):
    elsewhere = tmp_path / "elsewhere.txt"
    elsewhere.write_text("theirs\n")
    link = tmp_path / "state"
    link.symlink_to(elsewhere)
    files.write_text(link, "ours\n")
    assert elsewhere.read_text() == "theirs\n" and not link.is_symlink() and link.read_text() == "ours\n"


def test_a_staged_folder_replaces_the_old_one_only_when_complete(tmp_path):
    target = tmp_path / "tree"
    target.mkdir()
    (target / "old").write_text("kept")
    with pytest.raises(RuntimeError):
        with files.staged_dir(target) as staged:
            (staged / "new").write_text("half")
            raise RuntimeError("fetch failed")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["tree"] and (target / "old").read_text() == "kept"
    with files.staged_dir(target) as staged:
        (staged / "new").write_text("whole")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["tree"] and [p.name for p in target.iterdir()] == ["new"]
