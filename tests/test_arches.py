"""Architectures: the one table of spellings, the matrix's `arches`, --arch, and the cannot-build-here check."""

import platform

import pytest

from conftest import MINIMAL, ROOT, invoke
from fleetbake.errors import CannotBuildHere
from fleetbake.pipeline import arches, base, build, identity, matrix


def _row(extra):
    return MINIMAL.replace("    configurations: [pydebug]\n", f"    configurations: [pydebug]\n    {extra}\n")


def test_each_spelling_maps_to_one_architecture():
    # Debian's, OCI's and uname's names of the fleet's five Linux architectures.
    for spelling, oci in (("x86_64", "amd64"), ("amd64", "amd64"), ("aarch64", "arm64"), ("arm64", "arm64"),
                          ("ppc64el", "ppc64le"), ("ppc64le", "ppc64le"), ("s390x", "s390x"), ("riscv64", "riscv64")):
        assert arches.from_machine(spelling).name == oci, spelling
    assert arches.from_machine("mips64") is None and arches.from_machine("armv7l") is None
    assert arches.get("arm64").platform == "linux/arm64/v8" and arches.get("ppc64le").platform == "linux/ppc64le"
    assert arches.get("ppc64le").debian == "ppc64el" and arches.get("s390x").byteorder == "big"
    assert [a.ec2 for a in arches.ARCHES.values()] == ["x86_64", "arm64", "", "", ""]
    # manylinux's split: arm64 on GitHub's native runner, the others under QEMU.
    assert {a.name: a.runner for a in arches.ARCHES.values()} == {
        "amd64": "ubuntu-24.04", "arm64": "ubuntu-24.04-arm", "ppc64le": "qemu", "s390x": "qemu", "riscv64": "qemu"}


def test_the_live_matrix_names_each_rows_architectures():
    live = matrix.load(ROOT / "matrix.yml")
    assert live.rows["debian-12"].spec.arches == ["amd64", "arm64", "ppc64le", "s390x"]
    assert live.rows["debian-13"].spec.arches == ["amd64", "arm64", "ppc64le", "s390x", "riscv64"]
    assert live.rows["windows-2022"].spec.arches == ["amd64"]
    for row in live.rows.values():  # what each base is published for, no more
        assert set(row.spec.arches) <= set(arches.offered(row.spec.base)), row.name


@pytest.mark.parametrize("extra, reason", [
    ("arches: [aarch64]", "'aarch64' is not an architecture fleetbake builds"),
    ("arches: [amd64, arm64, amd64]", "'amd64' is listed twice"),
    ("arches: [riscv64]", "debian:12 is not published for riscv64 (it is for amd64, arm64, ppc64le, s390x)"),
    ("arches: []", "at least 1 item"),
])
def test_bad_architectures_get_one_line_naming_the_field(write_matrix, extra, reason):
    with pytest.raises(matrix.MatrixError) as info:
        matrix.load(write_matrix(_row(extra)))
    message = str(info.value)
    assert "\n" not in message and ":11: rows.debian-12.arches" in message and reason in message, message


def test_a_base_of_unknown_architectures_may_only_be_amd64(write_matrix):
    text = _row("arches: [arm64]").replace("base: debian:12", "base: example.org/custom:1")
    with pytest.raises(matrix.MatrixError, match=r"does not know which architectures example.org/custom:1 offers"):
        matrix.load(write_matrix(text))
    assert matrix.load(write_matrix(text.replace("[arm64]", "[amd64]"))).rows["debian-12"].arch == "amd64"


def test_select_takes_rows_for_an_architecture(project, monkeypatch):
    monkeypatch.setattr(platform, "machine", lambda: "x86_64")
    assert [(r.name, r.arch) for r in project.select("debian-12", "all")] == [("debian-12", "amd64"),
                                                                             ("debian-12", "arm64")]
    assert project.one("debian-12").arch == "amd64"
    assert project.one("debian-12", "arm64").architecture.machine == "aarch64"
    # --os all --arch arm64: the rows built for it; a row without it is refused by name.
    assert [r.name for r in project.select("all", "arm64")] == ["debian-12"]
    with pytest.raises(matrix.MatrixError, match=r"--arch: row fedora-44 is not built for 'arm64' \(known: amd64, or all\)"):
        project.select("fedora-44", "arm64")
    with pytest.raises(matrix.MatrixError, match="--arch: this task takes one architecture"):
        project.one("debian-12", "all")
    # On an arm64 host a row is taken for arm64 by default (as the matrix is loaded), and its image there is the
    # row's own tag.
    monkeypatch.setattr(platform, "machine", lambda: "aarch64")
    loaded = project.one("debian-12")
    row = matrix.RowView(loaded.name, loaded.spec, loaded.configurations)
    assert row.arch == "arm64" and identity.image_tag(row) == "fleetbake/worker:debian-12"
    assert identity.image_tag(row.on("amd64")) == "fleetbake/worker:debian-12-amd64"


def test_tags_and_base_names_per_architecture(project, monkeypatch):
    monkeypatch.setattr(platform, "machine", lambda: "x86_64")
    row = project.one("debian-12")
    assert identity.image_tags(row) == ["fleetbake/worker:debian-12", "fleetbake/worker:debian-12-amd64"]
    arm = row.on("arm64")
    assert identity.image_tags(arm) == ["fleetbake/worker:debian-12-arm64"]
    assert identity.row_tag(arm) == "fleetbake/worker:debian-12"  # FLEETBAKE_IMAGE: one Dockerfile for all
    assert base.local_ref(row) == "debian:12" and base.local_ref(arm) == "fleetbake/base:debian-12-arm64"
    assert "--architectures=arm64" in base.bootstrap_command(arm, "/t.tar")
    assert "--architectures=amd64" in base.bootstrap_command(row, "/t.tar")


def _binfmt(tmp_path, handler=None, status=True):
    root = tmp_path / "binfmt_misc"
    root.mkdir()
    if status:
        (root / "status").write_text("enabled\n")
    if handler is not None:
        (root / "qemu-aarch64").write_text(handler)
    return root


def test_binfmt_problems_say_why_and_what_to_install(tmp_path, monkeypatch):
    monkeypatch.setattr(platform, "machine", lambda: "x86_64")
    arm = arches.get("arm64")
    assert arches.binfmt_problem(arches.get("amd64"), tmp_path / "none") is None  # native: nothing to check
    assert "binfmt_misc is not mounted" in arches.binfmt_problem(arm, tmp_path / "none")
    assert "apt-get install qemu-user-static binfmt-support" in arches.binfmt_problem(arm, tmp_path / "none")
    (tmp_path / "a").mkdir()
    assert "no binfmt_misc handler qemu-aarch64" in arches.binfmt_problem(arm, _binfmt(tmp_path / "a"))
    (tmp_path / "b").mkdir()
    disabled = _binfmt(tmp_path / "b", "disabled\ninterpreter /usr/libexec/qemu-binfmt/aarch64-binfmt-P\nflags: PF\n")
    assert "is disabled: update-binfmts --enable qemu-aarch64" in arches.binfmt_problem(arm, disabled)
    (tmp_path / "c").mkdir()
    no_f = _binfmt(tmp_path / "c", "enabled\ninterpreter /usr/bin/qemu-aarch64\nflags: P\n")
    assert "lacks flag F (it has P)" in arches.binfmt_problem(arm, no_f)
    (tmp_path / "d").mkdir()
    assert arches.binfmt_problem(arm, _binfmt(tmp_path / "d", "enabled\ninterpreter /x\nflags: PF\n")) is None


def test_a_build_without_a_handler_cannot_build_here(project, tmp_path, monkeypatch):
    monkeypatch.setattr(platform, "machine", lambda: "x86_64")
    monkeypatch.setattr(arches, "BINFMT", tmp_path / "unmounted")
    monkeypatch.setattr(build.engine, "require_os", lambda *a: None)
    with pytest.raises(CannotBuildHere) as info:
        build.build_row(project, project.one("debian-12", "arm64"), ca_certs=None)
    assert str(info.value).startswith("cannot build arm64 here: binfmt_misc is not mounted at ")
    assert info.value.exit_code == 3


def test_the_cli_refuses_an_architecture_the_row_lacks():
    result = invoke("build", "--os", "windows-2022", "--arch", "arm64")
    assert result.returncode == 2
    assert result.stderr.strip().splitlines()[-1].endswith(
        "--arch: row windows-2022 is not built for 'arm64' (known: amd64, or all)")
