import json
import subprocess
import sys

import pytest

from conftest import ROOT
from fleetbake import __version__
from fleetbake.pipeline import record

IMAGE = "sha256:" + "ab" * 32


@pytest.fixture(autouse=True)
def scratch_build_dir(tmp_path, monkeypatch):
    monkeypatch.setenv("FLEETBAKE_BUILD_DIR", str(tmp_path / "build"))
    return tmp_path / "build"


def test_a_record_is_written_under_the_image_and_read_back(scratch_build_dir):
    path = record.write(IMAGE, "pydebug", {"row": "debian-12", "passed": True, "reason": "ok"}, junit=b"<testsuites/>")
    assert path == scratch_build_dir / "reports" / ("sha256-" + "ab" * 32) / "pydebug.json"
    assert path.parent == record.report_dir(IMAGE) and record.log_path(IMAGE, "pydebug").parent == path.parent
    loaded = record.load(IMAGE, "pydebug")
    assert loaded == json.loads(path.read_text())
    assert loaded["image_id"] == IMAGE and loaded["configuration"] == "pydebug" and loaded["passed"] is True
    assert loaded["fleetbake_version"] == __version__ and loaded["junit"] == "pydebug.junit.xml"
    assert (path.parent / "pydebug.junit.xml").read_bytes() == b"<testsuites/>"
    assert sorted(p.name for p in path.parent.iterdir()) == ["pydebug.json", "pydebug.junit.xml"]  # no temporaries


def test_a_record_must_say_whether_it_passed():
    with pytest.raises(ValueError):
        record.write(IMAGE, "pydebug", {"reason": "ok"})
    assert record.load(IMAGE, "pydebug") is None


def test_status_is_passed_and_failed_configurations_of_this_image():
    assert record.status(IMAGE) == ([], [])
    record.write(IMAGE, "pydebug", {"passed": True})
    record.write(IMAGE, "nogil", {"passed": False, "reason": "make failed (exit 2)"})
    record.write(IMAGE, "asan", {"passed": True})
    assert record.status(IMAGE) == (["asan", "pydebug"], ["nogil"])


def test_status_counts_a_copied_record_for_nothing_and_an_unreadable_one_as_failed():
    other = "sha256:" + "cd" * 32
    copied = record.write(other, "pydebug", {"passed": True})
    (record.report_dir(IMAGE)).mkdir(parents=True)
    (record.report_dir(IMAGE) / "pydebug.json").write_bytes(copied.read_bytes())  # names the other image
    (record.report_dir(IMAGE) / "nogil.json").write_text('{"passed": tr')  # cut off
    (record.report_dir(IMAGE) / "truthy.json").write_text(json.dumps({"image_id": IMAGE, "passed": "yes"}))
    (record.report_dir(IMAGE) / "listed.json").write_text(json.dumps([IMAGE, True]))  # JSON, but not a record
    assert record.status(IMAGE) == ([], ["listed", "nogil", "truthy"])
    assert record.load(IMAGE, "nogil") is None and record.load(IMAGE, "listed") is None


def test_publish_imports_neither_verify_nor_testcontainers():
    """Deciding what may be pushed reads records; it never loads the container runner."""
    check = ("import sys, fleetbake.pipeline.publish; "
             "assert 'fleetbake.pipeline.verify' not in sys.modules and 'testcontainers' not in sys.modules, "
             "sorted(m for m in sys.modules if 'verify' in m or 'testcontainers' in m)")
    result = subprocess.run([sys.executable, "-c", check], cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr


def test_importing_verify_changes_no_global_state():
    """testcontainers is configured when a container starts, not when verify is imported."""
    check = ("import os, sys; before = dict(os.environ); import fleetbake.pipeline.verify, fleetbake.devtools.bench; "
             "assert dict(os.environ) == before, set(os.environ) ^ set(before); "
             "assert 'testcontainers' not in sys.modules")
    result = subprocess.run([sys.executable, "-c", check], cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr


def test_what_invoke_report_writes_beside_the_records_never_counts_as_one():
    """The SBOM and software report (JSON too) are about the image; a configuration may be called anything."""
    from fleetbake.pipeline import report, sbom, software

    record.write(IMAGE, "software", {"row": "debian-12", "passed": True, "reason": "ok"})
    folder = record.image_dir(IMAGE)
    folder.mkdir()
    for name in (sbom.SBOM, software.REPORT_JSON, software.REPORT_MD, report.CHANGES_MD):
        (folder / name).write_text('{"spdxVersion": "SPDX-2.3"}')
    assert folder.parent == record.report_dir(IMAGE)
    assert record.status(IMAGE) == (["software"], [])
