import json
import subprocess
import sys

import pytest

from conftest import MINIMAL, ROOT
from fleetbake import matrix


def test_the_project_matrix_loads_with_both_debian_rows():
    m = matrix.load(ROOT / "matrix.yml")
    assert {"debian-12", "debian-13", "ubuntu-24.04", "fedora-44", "fedora-45", "windows-2022"} <= set(m.rows)
    for row in (m.rows["debian-12"], m.rows["debian-13"]):
        assert {"pydebug", "release", "nogil", "installed", "clang", "asan"} <= set(row.configurations)
        assert row.spec.worker_version.startswith("4.3.")
        for needed in ("gdb", "lcov", "pkg-config", "tk-dev", "uuid-dev", "libzstd-dev", "xvfb", "clang"):
            assert needed in row.all_packages
    assert "libmpdec-dev" in m.rows["debian-13"].all_packages
    assert "libmpdec-dev" not in m.rows["debian-12"].all_packages  # bookworm has none
    assert "mpdecimal-devel" in m.rows["fedora-45"].all_packages  # the YAML merge key carried it over
    assert m.rows["windows-2022"].spec.runner == "windows-2022"
    asan = m.rows["debian-12"].configurations["asan"]
    assert asan.env["ASAN_OPTIONS"] == "detect_leaks=0:allocator_may_return_null=1:handle_segv=0"
    assert asan.smoke  # inherits the top-level smoke list


def test_json_lists_rows_for_ci():
    rows = json.loads(matrix.load(ROOT / "matrix.yml").to_json())
    assert [r["os"] for r in rows][:2] == ["debian-12", "debian-13"]
    assert "pydebug" in rows[0]["configurations"]


def _error(write_matrix, text):
    path = write_matrix(text)
    with pytest.raises(matrix.MatrixError) as info:
        matrix.load(path)
    message = str(info.value)
    assert "\n" not in message
    assert message.startswith(f"{path}:")
    return info.value


@pytest.mark.parametrize(
    "old, new, line, field, reason",
    [
        ("packages: [build-essential]", "packages: [build-essential, 'gcc; rm -rf /']", 9, "rows.debian-12.packages[1]", "not a safe package name"),
        ("packages: [build-essential]", 'packages: ["bad\\nname"]', 9, "rows.debian-12.packages[0]", "not a safe package name"),
        ("configure: [--with-pydebug]", "configure: ['--with-pydebug $(id)']", 4, "configurations.pydebug.configure[0]", "not a safe configure flag"),
        ("configure: [--with-pydebug]", "configure: ['--x`whoami`']", 4, "configurations.pydebug.configure[0]", "not a safe configure flag"),
        ("    base: debian:12\n", "", 6, "rows.debian-12.base", "required field is missing"),
        ("family: debian", "family: gentoo", 7, "rows.debian-12.family", "Input should be 'debian'"),
        ("configurations: [pydebug]", "configurations: pydebug", 10, "rows.debian-12.configurations", "valid list"),
        ("packages: [build-essential]", "packages: [build-essential]\n    uid: '1000'", 10, "rows.debian-12.uid", "valid integer"),
        ("configurations: [pydebug]", "configurations: [pydebug, turbo]", 10, "rows.debian-12.configurations[1]", "unknown configuration 'turbo'"),
        ("family: debian", "family: debian\n    colour: blue", 8, "rows.debian-12.colour", "unknown field"),
    ],
)
def test_bad_input_names_file_line_field_and_reason(write_matrix, old, new, line, field, reason):
    assert old in MINIMAL
    error = _error(write_matrix, MINIMAL.replace(old, new))
    assert (error.line, error.field) == (line, field), str(error)
    assert reason in error.reason


def test_duplicate_rows_are_rejected_with_both_lines(write_matrix):
    text = MINIMAL + "  debian-12:\n    family: debian\n"
    error = _error(write_matrix, text)
    assert error.field == "rows"
    assert error.line == 11
    assert "duplicate key 'debian-12' (first on line 6)" in error.reason


def test_malformed_yaml_reports_its_line(write_matrix):
    error = _error(write_matrix, MINIMAL.replace("packages: [build-essential]", "packages: [build-essential"))
    assert error.line is not None and error.line >= 9
    assert "malformed YAML" in error.reason


def test_unknown_row_and_configuration_on_the_command_line(write_matrix):
    m = matrix.load(write_matrix(MINIMAL))
    with pytest.raises(matrix.MatrixError, match="--os: unknown row 'debian-99' \\(known: debian-12\\)"):
        m.select("debian-99")
    with pytest.raises(matrix.MatrixError, match="--config: row debian-12 has no configuration 'asan'"):
        m.configurations(m.rows["debian-12"], "asan")
    assert [r.name for r in m.select("all")] == ["debian-12"]


def test_missing_file_and_empty_file(tmp_path, write_matrix):
    with pytest.raises(matrix.MatrixError, match="cannot read"):
        matrix.load(tmp_path / "nope.yml")
    with pytest.raises(matrix.MatrixError, match="file is empty"):
        matrix.load(write_matrix(""))


def test_cli_gives_one_line_and_non_zero_exit_without_traceback(write_matrix):
    bad = write_matrix(MINIMAL.replace("[build-essential]", "['a|b']"))
    result = subprocess.run(
        [sys.executable, "-m", "invoke", "matrix", "--matrix", str(bad)],
        cwd=ROOT, capture_output=True, text=True, check=False,
    )
    assert result.returncode == 2
    assert "Traceback" not in result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith(f"error: {bad}:9: rows.debian-12.packages[0]: 'a|b' is not a safe package name")
