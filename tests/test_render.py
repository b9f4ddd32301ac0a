import os
import re
from pathlib import Path

import pytest

from conftest import MINIMAL, ROOT
from fleetbake import matrix, render
from fleetbake.errors import UsageError
from test_cli import invoke
from update_golden import GOLDEN, TEMPLATED

CERT = b"-----BEGIN CERTIFICATE-----\nMIIBfake\n-----END CERTIFICATE-----\n"


@pytest.mark.parametrize("row", list(matrix.load(ROOT / "matrix.yml").rows))
def test_render_matches_golden_files(project, row, no_ca):
    """The goldens are only read here: after an intended change run tests/update_golden.py and review the diff."""
    context = render.render_row(project, project.rows[row])
    for name in TEMPLATED:
        golden = GOLDEN / row / name
        assert golden.is_file(), f"no {golden.relative_to(ROOT)}: run tests/update_golden.py"
        assert context[name].content == golden.read_bytes(), f"{row}/{name} differs from {golden.relative_to(ROOT)}"


def test_every_golden_is_a_matrix_row_and_holds_only_templated_files(project):
    assert sorted(p.name for p in GOLDEN.iterdir()) == sorted(project.rows)
    for row in GOLDEN.iterdir():
        assert sorted(p.name for p in row.iterdir()) == sorted(TEMPLATED), row


def test_copied_files_are_the_sources_plus_the_header(project, no_ca):
    row = project.rows["debian-12"]
    family = render.FAMILIES[row.spec.family]
    origins = {f"scripts/{Path(name).name}": ROOT / "images" / name for name in family.scripts}
    origins.update({source.name: source for source in family.runtime_files})
    context = render.render_row(project, row)
    assert set(origins) <= set(context) and len(origins) >= 8
    for name, origin in origins.items():
        source = origin.read_text().splitlines()
        rendered = context[name].content.decode().splitlines()
        position = 1 if rendered[0].startswith("#!") else 0
        assert rendered[position].startswith("# Generated from matrix.yml")
        assert rendered[:position] + rendered[position + 1 :] == source, name
        assert context[name].executable == (name.startswith("scripts/") or name.endswith(".py")), name


def test_render_is_deterministic_and_every_file_says_generated(project, tmp_path, no_ca):
    rows = project.select("all")
    out = tmp_path / "contexts"
    first = render.render(project, rows, out_root=out)
    second = render.render(project, rows, out_root=out)
    assert {k: render.context_digest(v) for k, v in first.items()} == {
        k: render.context_digest(v) for k, v in second.items()
    }
    for name, context in first.items():
        for path, item in context.items():
            lines = item.content.decode().splitlines()
            head = lines[1] if lines[0].startswith("#!") else lines[0]
            assert "Generated from matrix.yml" in head and "do not edit" in head, f"{name}/{path}"
            assert (out / name / path).read_bytes() == item.content
        scripts = list((out / name / "scripts").iterdir())
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


def test_rewrite_drops_stale_files_and_drift_check_finds_edits(project, tmp_path, no_ca):
    row = project.rows["debian-12"]
    root = tmp_path / "contexts"
    two, one = tmp_path / "two.pem", tmp_path / "one.pem"
    two.write_bytes(CERT + CERT.replace(b"fake", b"other"))
    one.write_bytes(CERT)
    out = root / row.name
    render.render(project, [row], str(two), out_root=root)
    assert (out / "ca-certificates" / "fleetbake-extra-002.crt").is_file()
    (out / "Dockerfile").write_text((out / "Dockerfile").read_text() + "RUN echo hand-edit\n")
    with pytest.raises(render.FleetbakeError, match="differ from a fresh render in: debian-12"):
        render.check(project, [row], str(one), out_root=root, log=lambda _: None)
    changed = render.write_context(render.render_row(project, row, render.ca_certs_from(str(one))), out)
    assert sorted(changed) == ["Dockerfile", "ca-certificates/fleetbake-extra-002.crt"]
    assert not (out / "ca-certificates" / "fleetbake-extra-002.crt").exists()
    render.check(project, [row], str(one), out_root=root, log=lambda _: None)


def snapshot(top: Path) -> dict[str, tuple[bytes, int]]:
    """Every file under top (dot files too: a left-over temporary file shows), with its bytes and mode."""
    return {p.relative_to(top).as_posix(): (p.read_bytes(), p.stat().st_mode) for p in sorted(top.rglob("*")) if p.is_file()}


def test_bad_input_through_the_cli_leaves_the_previous_render_untouched(tmp_path, write_matrix):
    out = tmp_path / "b"
    env = {"FLEETBAKE_BUILD_DIR": str(out), "FLEETBAKE_CA_BUNDLE": ""}
    good = write_matrix(MINIMAL, "good.yml")
    proxy = tmp_path / "proxy.pem"
    proxy.write_bytes(CERT)
    first = invoke("render", "--matrix", str(good), "--ca-bundle", str(proxy), env=env)
    assert first.returncode == 0, first.stderr
    before = snapshot(out)
    assert [n for n in before if n.endswith("/Dockerfile")] and [n for n in before if n.endswith(".crt")], before.keys()

    bad_matrix = write_matrix(MINIMAL.replace("[build-essential]", "[build-essential, 'x&&y']"), "bad.yml")
    empty = tmp_path / "empty.pem"
    empty.write_text("no certificate here\n")
    cases = [
        (["--matrix", str(bad_matrix)],
         f"error: {bad_matrix}:9: rows.debian-12.packages[1]: 'x&&y' is not a safe package name (allowed: "),
        (["--matrix", str(good), "--ca-bundle", str(empty)], f"error: CA bundle {empty}: no PEM certificates found"),
        (["--matrix", str(good), "--ca-bundle", str(tmp_path / "gone.pem")], f"error: CA bundle {tmp_path / 'gone.pem'}: cannot read: "),
        (["--matrix", str(good), "--os", "gentoo-1"], f"error: {good}: --os: unknown row 'gentoo-1' (known: debian-12)"),
    ]
    for args, message in cases:
        result = invoke("render", *args, env=env)
        assert result.returncode == 2, (args, result.stdout, result.stderr)
        assert len(result.stderr.splitlines()) == 1 and result.stderr.startswith(message), (args, result.stderr)
        assert "Traceback" not in result.stderr + result.stdout
        assert snapshot(out) == before, f"render {' '.join(args)} changed the previous output"


def test_a_bad_ca_bundle_after_a_good_render_changes_nothing(project, build_dir, tmp_path):
    proxy = tmp_path / "proxy.pem"
    proxy.write_bytes(CERT)
    rows = project.select("all")
    contexts = render.render(project, rows, str(proxy))
    assert all("ca-certificates/fleetbake-extra-001.crt" in context for context in contexts.values())
    before = snapshot(build_dir)
    assert len([n for n in before if n.endswith("/Dockerfile")]) == len(rows)
    empty = tmp_path / "empty.pem"
    empty.write_text("-----BEGIN CERTIFICATE-----\ntruncated\n")
    with pytest.raises(UsageError, match=f"CA bundle {empty}: no PEM certificates found"):
        render.render(project, rows, str(empty))
    assert snapshot(build_dir) == before


def test_rows_named_like_builds_other_folders_touch_nothing_but_their_own_output(write_matrix, build_dir, no_ca):
    """Reports gate publishing, master/ holds the local master's secrets: no row name may reach them."""
    names = ["reports", "master", "packer", "bench", "service", "contexts"]
    text = MINIMAL.replace("  debian-12:\n", "".join(f"  {n}:\n    family: debian\n    base: debian:12\n"
                                                    f"    packages: [build-essential]\n    configurations: [pydebug]\n"
                                                    for n in names[1:]) + f"  {names[0]}:\n")
    others = {}
    for folder in names:
        precious = build_dir / folder / "debian-12" / "precious.json"
        precious.parent.mkdir(parents=True)
        precious.write_text(f"{folder}'s own\n")
        others[precious] = precious.read_text()
    m = matrix.load(write_matrix(text))
    for _ in range(2):  # a re-render deletes stale files: still only its own
        contexts = render.render(m, m.select("all"))
    assert sorted(contexts) == sorted(names)
    assert {p: p.read_text() for p in others} == others
    for name in names:
        assert (build_dir / "contexts" / name / "Dockerfile").is_file()
    assert not (build_dir / "reports" / "Dockerfile").exists()


def test_a_rerender_keeps_the_users_own_files_and_drops_only_what_it_wrote(project, tmp_path, no_ca, monkeypatch):
    row = project.rows["debian-12"]
    out = tmp_path / "out"
    bundle = tmp_path / "ca.pem"
    bundle.write_bytes(CERT)
    render.render(project, [row], str(bundle), out_root=out)
    (out / row.name / "NOTES.txt").write_text("the user's own\n")
    (out / row.name / "ca-certificates" / "mine.crt").write_text("the user's own cert\n")
    render.render(project, [row], "", out_root=out)  # the extra CA is gone from this render
    assert not (out / row.name / "ca-certificates" / "fleetbake-extra-001.crt").exists()
    assert (out / row.name / "NOTES.txt").read_text() == "the user's own\n"
    assert (out / row.name / "ca-certificates" / "mine.crt").exists()
    # ...and the build never sees it: it reads the rendered context, not the folder.
    import io
    import tarfile

    names = tarfile.open(fileobj=io.BytesIO(render.context_tar(render.render_row(project, row)))).getnames()
    assert "NOTES.txt" not in names and "ca-certificates/mine.crt" not in names and "Dockerfile" in names


def test_render_never_writes_through_a_symlink_out_of_its_folder(project, tmp_path, no_ca):
    row = project.rows["debian-12"]
    out, elsewhere = tmp_path / "out", tmp_path / "elsewhere"
    elsewhere.mkdir()
    (out / row.name).mkdir(parents=True)
    (out / row.name / "scripts").symlink_to(elsewhere)
    with pytest.raises(UsageError, match="leads outside"):
        render.render(project, [row], "", out_root=out)
    assert list(elsewhere.iterdir()) == []
