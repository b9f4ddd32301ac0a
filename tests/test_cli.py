"""The tasks as a user runs them: one-line errors, exit codes, no tracebacks."""

import os
import subprocess
import sys

from conftest import MINIMAL, ROOT


def invoke(*args, env=None):
    return subprocess.run(
        [sys.executable, "-m", "invoke", *args], cwd=ROOT, capture_output=True, text=True, timeout=120,
        env={**os.environ, **(env or {})}, check=False,
    )


def test_matrix_table_lists_rows_and_configurations():
    result = invoke("matrix")
    assert result.returncode == 0
    header, *rows = result.stdout.splitlines()
    assert header.split()[:3] == ["row", "base", "worker"] and "asan" in header
    assert rows[0].split()[:3] == ["debian-12", "debian:12", "4.3.0"]


def test_unknown_row_is_a_usage_error(tmp_path):
    result = invoke("render", "--os", "gentoo-1", env={"FLEETBAKE_BUILD_DIR": str(tmp_path)})
    assert result.returncode == 2
    assert result.stderr.strip().startswith("error: matrix.yml: --os: unknown row 'gentoo-1' (known: debian-12, debian-13, ")
    assert not any(tmp_path.iterdir())


def test_no_docker_engine_gives_one_line(tmp_path):
    result = invoke("build", "--os", "debian-12", env={"DOCKER_HOST": f"unix://{tmp_path}/none.sock",
                                                       "FLEETBAKE_BUILD_DIR": str(tmp_path / "b")})
    assert result.returncode == 1
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: cannot reach the Docker engine") and "Traceback" not in result.stderr


def test_render_check_catches_drift(tmp_path, write_matrix):
    env = {"FLEETBAKE_BUILD_DIR": str(tmp_path / "b"), "FLEETBAKE_CA_BUNDLE": ""}
    path = str(write_matrix(MINIMAL))
    assert invoke("render", "--matrix", path, env=env).returncode == 0
    assert invoke("render", "--check", "--matrix", path, env=env).returncode == 0
    [dockerfile] = (tmp_path / "b").rglob("Dockerfile")  # wherever paths puts the row's build context
    assert dockerfile.parent.name == "debian-12"
    dockerfile.write_text(dockerfile.read_text() + "# hand edit\n")
    result = invoke("render", "--check", "--matrix", path, env=env)
    assert result.returncode == 1, result.stderr
    assert any(line.endswith("debian-12/: differs: Dockerfile") for line in result.stdout.splitlines()), result.stdout
    assert result.stderr.startswith("error: generated files differ from a fresh render in: debian-12")


def test_single_row_tasks_refuse_all_and_a_matrix_without_the_row(tmp_path, write_matrix):
    env = {"FLEETBAKE_BUILD_DIR": str(tmp_path / "b")}
    result = invoke("packer", "--os", "all", env=env)
    assert result.returncode == 2 and result.stderr.startswith("error: matrix.yml: --os: this task takes one row, not 'all'")
    # `invoke master` uses the debian-12 row; a matrix without it is a one-line error, not a KeyError.
    no_debian12 = write_matrix(MINIMAL.replace("debian-12:", "debian-13:"))
    result = invoke("master", "--matrix", str(no_debian12), env=env)
    assert result.returncode == 2 and "unknown row 'debian-12'" in result.stderr and "Traceback" not in result.stderr
    assert not (tmp_path / "b").exists()
