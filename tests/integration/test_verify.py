"""Verification for real: CPython compiled and smoke-tested inside the debian-12 image."""

import io
import json

import pytest

from conftest import MINIMAL, ROOT
from fleetbake.errors import FleetbakeError
from fleetbake.pipeline import build, cpython, matrix, record, verify


def test_pydebug_compiles_cpython_and_passes_the_smoke_tests(verified_image):
    """The verified image's pydebug record: the README's first command verified it (the `verified_image` fixture
    verifies it here, for real, when no record of this exact image is there). Compiling and testing the same image
    again would prove the same thing twice; what the record holds is checked."""
    image_id = verified_image.image_id
    written = record.load(image_id, "pydebug")
    assert written["passed"] is True and written["image_id"] == image_id and written["reason"] == "ok"
    assert [s["name"] for s in written["steps"]] == ["platform", "unpack", "configure", "make", "pythoninfo", "modules", "tests"]
    assert all(s["exit_code"] == 0 for s in written["steps"])
    assert written["missing_modules"] == [] and written["missing_ok"] == {}
    tests = written["tests"]
    assert tests["tests"] > 1000 and tests["failures"] == 0 and tests["errors"] == 0
    assert written["cpython"]["version"].startswith("3.") and len(written["cpython"]["sha256"]) == 64
    junit = record.report_dir(image_id) / written["junit"]
    assert verify.junit_summary(junit.read_bytes()) == tests  # the JUnit XML the counts come from
    log = record.log_path(image_id, "pydebug").read_text()
    assert "$ make -j" in log and "== Tests result: SUCCESS ==" in log


def test_a_failing_configure_fails_verification_and_says_where(write_matrix, build_dir, image):
    """Its failing record goes to a scratch build/ (the real image's records gate publishing)."""
    broken = write_matrix(MINIMAL.replace("configure: [--with-pydebug]", "configure: [CC=/nonexistent/cc]"))
    m = matrix.load(broken)
    [result] = verify.verify(m, m.rows["debian-12"], ["pydebug"], cpython_spec=project_source(), log=print)
    assert not result.passed
    assert result.reason == "configure failed (exit 77)"  # autoconf's "C compiler cannot create executables"
    assert [s.name for s in result.steps] == ["platform", "unpack", "configure"]
    assert json.loads(result.record.read_text())["passed"] is False


def test_a_missing_package_fails_the_build_naming_the_step(write_matrix, build_dir, image):
    text = MINIMAL.replace("debian-12:", "broken-row:").replace("[build-essential]", "[no-such-package-fleetbake]")
    m = matrix.load(write_matrix(text))
    with pytest.raises(FleetbakeError) as info:
        build.build(m, m.select("broken-row"), ca_bundle="", log=print)
    message = str(info.value)
    # The step that installs the packages (FROM, ARG SOURCE_DATE_EPOCH, COPY layers/1/ /, then this RUN).
    assert "broken-row: build failed at 'Step 5/" in message and "install-packages.sh" in message
    assert "returned a non-zero code: 100" in message


MISSING_OK = MINIMAL.replace("smoke: [test_sys]", "smoke: [test_uuid]") + """\
    missing_ok:
      _uuid: uuid-dev removed from this image on purpose
"""


def test_missing_ok_lets_a_row_without_one_module_verify_and_the_record_says_so(client, image, write_matrix, build_dir):
    """The debian-12 image minus uuid-dev: CPython builds no _uuid, which the row allows, with its reason."""
    no_uuid, _ = client.images.build(
        fileobj=io.BytesIO(f"FROM {image.image_id}\nRUN dpkg --remove --force-depends uuid-dev\n".encode()),
        tag="fleetbake-test/worker:no-uuid", rm=True)
    try:
        m = matrix.load(write_matrix(MISSING_OK))
        row = m.rows["debian-12"]
        steps = dict(verify.plan(row.configurations["pydebug"], cpython.resolve(project_source(), print), 2,
                                 row.spec.missing_ok))
        imported = steps["modules"][steps["modules"].index("-c") + 2:]
        assert "_uuid" not in imported and {"_ssl", "_sqlite3", "_ctypes"} <= set(imported)  # not imported either
        lines = []
        [result] = verify.verify(m, row, ["pydebug"], cpython_spec=project_source(), image=no_uuid.id,
                                 log=lambda line: (lines.append(line), print(line)))
        assert result.passed, result.reason
        assert [s.name for s in result.steps] == ["platform", "unpack", "configure", "make", "pythoninfo", "modules", "tests"]
        assert any(line.startswith("[debian-12 pydebug 4/7 make] ") for line in lines)  # the step counter
        assert result.missing_modules == [] and result.missing_ok == {"_uuid": "uuid-dev removed from this image on purpose"}
        record = json.loads(result.record.read_text())
        assert record["missing_ok"] == result.missing_ok and record["image_id"] == no_uuid.id
        assert "not built, as the row allows: _uuid" in verify.summary_table([result])
    finally:
        client.images.remove(no_uuid.id, force=True, noprune=True)  # never its parent


def project_source():
    return matrix.load(ROOT / "matrix.yml").rows["debian-12"].spec.cpython


def test_debian_13_builds_from_a_bootstrapped_base_and_verifies(live_project):
    """The second Debian row, end to end: base (bootstrapped where no registry answers), build, verify."""
    row = live_project.rows["debian-13"]
    [built] = build.build(live_project, [row], log=print)
    [result] = verify.verify(live_project, row, ["pydebug"], log=print)
    assert result.passed, result.reason
    assert result.missing_modules == [] and result.tests["failures"] == 0
    assert json.loads(result.record.read_text())["image_id"] == built.image_id
