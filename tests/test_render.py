import os
import re

import pytest

from conftest import MINIMAL, ROOT
from fleetbake import matrix, paths, render

GOLDEN = ROOT / "tests" / "golden"
CERT = b"-----BEGIN CERTIFICATE-----\nMIIBfake\n-----END CERTIFICATE-----\n"


@pytest.fixture
def project():
    return matrix.load(ROOT / "matrix.yml")


# The files the templates generate; the rest are copies of images/ with a header line.
TEMPLATED = ("Dockerfile", "packages.txt")


@pytest.mark.parametrize("row", ["debian-12", "debian-13", "ubuntu-24.04", "fedora-44", "fedora-45", "windows-2022"])
def test_render_matches_golden_files(project, row, no_ca):
    """Regenerate with FLEETBAKE_UPDATE_GOLDEN=1 after an intended change, and review the diff."""
    context = render.render_row(project, project.rows[row])
    templated = {name: context[name] for name in TEMPLATED}
    golden = GOLDEN / row
    if os.environ.get("FLEETBAKE_UPDATE_GOLDEN"):
        render.write_context(templated, golden)
    assert render.diff_context(templated, golden) == []


def test_copied_files_are_the_sources_plus_the_header(project, no_ca):
    context = render.render_row(project, project.rows["debian-12"])
    copied = [name for name in context if name.startswith("scripts/") or name.endswith((".py", ".tac"))]
    assert len(copied) == 8
    for name in copied:
        base = name.split("/")[-1]
        origin = ROOT / "fleetbake" / base if base == "preflight.py" else next((ROOT / "images").rglob(base))
        source = origin.read_text().splitlines()
        rendered = context[name].content.decode().splitlines()
        position = 1 if rendered[0].startswith("#!") else 0
        assert rendered[position].startswith("# Generated from matrix.yml")
        assert rendered[:position] + rendered[position + 1 :] == source, name


def test_render_is_deterministic_and_every_file_says_generated(project, build_dir, no_ca):
    rows = project.select("all")
    first = render.render(project, rows)
    second = render.render(project, rows)
    assert {k: render.context_digest(v) for k, v in first.items()} == {
        k: render.context_digest(v) for k, v in second.items()
    }
    for name, context in first.items():
        for path, item in context.items():
            lines = item.content.decode().splitlines()
            head = lines[1] if lines[0].startswith("#!") else lines[0]
            assert "Generated from matrix.yml" in head and "do not edit" in head, f"{name}/{path}"
        assert (build_dir / name / "Dockerfile").is_file()
        scripts = list((build_dir / name / "scripts").iterdir())
        assert scripts and all(os.access(script, os.X_OK) for script in scripts)


def test_dockerfile_builds_with_the_classic_builder(project, no_ca):
    for row in project.rows.values():
        text = render.render_row(project, row)["Dockerfile"].content.decode()
        dockerfile = "\n".join(line for line in text.splitlines() if not line.startswith("#"))
        assert "RUN --mount" not in dockerfile
        assert not re.search(r"<<-?\s*['\"]?[A-Z]+", dockerfile), "heredocs need BuildKit"
        assert "COPY --chmod" not in dockerfile
        assert dockerfile.splitlines()[0] == f"FROM {row.spec.base}"


def test_packages_come_from_the_matrix(project, no_ca):
    row = project.rows["debian-12"]
    listed = render.render_row(project, row)["packages.txt"].content.decode().splitlines()
    packages = [line for line in listed if line and not line.startswith("#")]
    assert packages == ["ca-certificates", "python3-venv", "tini", *row.all_packages]


def test_ca_bundle_is_split_into_one_certificate_a_file(project, tmp_path, monkeypatch):
    bundle = tmp_path / "proxy.pem"
    other = CERT.replace(b"fake", b"other")
    bundle.write_bytes(b"junk\n" + CERT + other + CERT)  # a duplicate is dropped
    monkeypatch.setenv("FLEETBAKE_CA_BUNDLE", str(bundle))
    context = render.render_row(project, project.rows["debian-12"], render.ca_certs_from(None))
    certs = sorted(k for k in context if k.endswith(".crt"))
    assert certs == ["ca-certificates/fleetbake-extra-001.crt", "ca-certificates/fleetbake-extra-002.crt"]
    assert context[certs[1]].content.endswith(other)


def test_ca_bundle_errors_are_clear(tmp_path, monkeypatch):
    monkeypatch.setenv("FLEETBAKE_CA_BUNDLE", str(tmp_path / "missing.pem"))
    with pytest.raises(render.UsageError, match="missing.pem: cannot read"):
        render.ca_certs_from(None)
    (tmp_path / "empty.pem").write_text("nothing here\n")
    with pytest.raises(render.UsageError, match="no PEM certificates"):
        render.ca_certs_from(str(tmp_path / "empty.pem"))
    monkeypatch.setenv("FLEETBAKE_CA_BUNDLE", "")
    monkeypatch.setenv("SSL_CERT_FILE", str(tmp_path / "missing.pem"))
    assert render.ca_certs_from(None) is None  # an empty FLEETBAKE_CA_BUNDLE turns it off


def test_rewrite_drops_stale_files_and_drift_check_finds_edits(project, build_dir, no_ca):
    row = project.rows["debian-12"]
    out = build_dir / row.name
    render.render(project, [row])
    (out / "ca-certificates" / "stale.crt").write_text("old")
    (out / "Dockerfile").write_text((out / "Dockerfile").read_text() + "RUN echo hand-edit\n")
    with pytest.raises(render.FleetbakeError, match="differ from a fresh render in: debian-12"):
        render.check(project, [row], log=lambda _: None)
    changed = render.write_context(render.render_row(project, row), out)
    assert sorted(changed) == ["Dockerfile", "ca-certificates/stale.crt"]
    render.check(project, [row], log=lambda _: None)


def test_bad_matrix_leaves_previous_output_untouched(write_matrix, build_dir, no_ca):
    good = matrix.load(write_matrix(MINIMAL))
    render.render(good, good.select("all"))
    before = {p: p.read_bytes() for p in build_dir.rglob("*") if p.is_file()}
    bad = write_matrix(MINIMAL.replace("[build-essential]", "[build-essential, 'x&&y']"))
    with pytest.raises(matrix.MatrixError):
        render.render(matrix.load(bad), [])
    assert {p: p.read_bytes() for p in build_dir.rglob("*") if p.is_file()} == before
    assert not [p for p in build_dir.rglob(".*") if p.is_file()], "temporary files left behind"
    assert paths.build_dir() == build_dir
