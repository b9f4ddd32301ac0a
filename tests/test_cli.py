"""The tasks as a user runs them: one-line errors, exit codes, no tracebacks."""

from conftest import FIXTURE_MATRIX, MINIMAL, invoke


def test_matrix_table_lists_rows_and_configurations():
    result = invoke("matrix", "--matrix", str(FIXTURE_MATRIX))
    assert result.returncode == 0, result.stderr
    header, *rows = result.stdout.splitlines()
    assert header.split() == ["row", "base", "worker", "pydebug", "nogil", "installed", "clang"]
    assert [row.split()[0] for row in rows] == ["debian-12", "debian-13", "ubuntu-24.04", "fedora-44", "fedora-45", "windows-2022"]
    assert rows[0].split() == ["debian-12", "debian:12", "4.3.0", "x", "x", "x", "x"]
    assert rows[1].split()[3:] == ["x", "x", "-", "-"]  # debian-13 has pydebug and nogil only


def test_the_default_matrix_is_the_live_matrix_yml(live_project):
    result = invoke("matrix", "--json")
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == live_project.to_json()


def test_unknown_row_is_a_usage_error(tmp_path):
    result = invoke("render", "--matrix", str(FIXTURE_MATRIX), "--os", "gentoo-1", env={"FLEETBAKE_BUILD_DIR": str(tmp_path)})
    assert result.returncode == 2
    assert result.stderr.strip() == (f"error: {FIXTURE_MATRIX}: --os: unknown row 'gentoo-1' "
                                     "(known: debian-12, debian-13, ubuntu-24.04, fedora-44, fedora-45, windows-2022)")
    assert not any(tmp_path.iterdir())


def test_no_docker_engine_gives_one_line(tmp_path):
    result = invoke("build", "--matrix", str(FIXTURE_MATRIX), "--os", "debian-12",
                    env={"DOCKER_HOST": f"unix://{tmp_path}/none.sock", "FLEETBAKE_BUILD_DIR": str(tmp_path / "b")})
    assert result.returncode == 1
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: cannot reach the Docker engine") and "Traceback" not in result.stderr


def test_render_check_catches_drift(tmp_path, write_matrix):
    env = {"FLEETBAKE_BUILD_DIR": str(tmp_path / "b"), "FLEETBAKE_CA_BUNDLE": ""}
    path = str(write_matrix(MINIMAL))
    assert invoke("render", "--matrix", path, env=env).returncode == 0
    assert invoke("render", "--check", "--matrix", path, env=env).returncode == 0
    [dockerfile] = tmp_path.rglob("Dockerfile")
    assert dockerfile == tmp_path / "images" / "debian" / "debian-12" / "Dockerfile"  # beside the matrix
    dockerfile.write_text(dockerfile.read_text() + "# hand edit\n")
    result = invoke("render", "--check", "--matrix", path, env=env)
    assert result.returncode == 1, result.stderr
    assert any(line.endswith("debian-12/: differs: Dockerfile") for line in result.stdout.splitlines()), result.stdout
    assert result.stderr.startswith("error: generated files differ from a fresh render in: images/debian/debian-12 ")


def test_single_row_tasks_refuse_all_and_a_matrix_without_the_row(tmp_path, write_matrix):
    env = {"FLEETBAKE_BUILD_DIR": str(tmp_path / "b")}
    result = invoke("packer", "--os", "all", env=env)
    assert result.returncode == 2 and result.stderr.startswith("error: matrix.yml: --os: this task takes one row, not 'all'")
    # `invoke master` uses the debian-12 row; a matrix without it is a one-line error, not a KeyError.
    no_debian12 = write_matrix(MINIMAL.replace("debian-12:", "debian-13:"))
    result = invoke("master", "--matrix", str(no_debian12), env=env)
    assert result.returncode == 2 and "unknown row 'debian-12'" in result.stderr and "Traceback" not in result.stderr
    assert not (tmp_path / "b").exists()
