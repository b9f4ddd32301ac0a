import os
import re
from pathlib import Path

import pytest

from conftest import MINIMAL, ROOT, invoke, snapshot
from fleetbake.errors import UsageError
from fleetbake.pipeline import families, matrix, render

CERT = b"-----BEGIN CERTIFICATE-----\nMIIBfake\n-----END CERTIFICATE-----\n"


def in_context(row, name: str) -> str:
    """Where the row's context keeps the file of logical name `name` (packages.txt, scripts/x.sh, or a file in a
    copied folder: fleetbake/worker/x.py, ca-certificates/x.crt), by render.placed."""
    top, _, rest = name.partition("/")
    folder = render.placed(row, f"{top}/")
    return folder + rest if rest and folder != f"{top}/" else render.placed(row, name)


def test_the_committed_output_is_a_fresh_render(live_project):
    """images/<family>/<row>/ and packer/<row>/ are committed: CI's drift check is this comparison."""
    lines = []
    render.check(live_project, live_project.select("all"), log=lines.append)
    assert len(lines) == 2 * len(live_project.rows) and all(line.endswith("up to date") for line in lines), lines
    for row in live_project.rows.values():
        folder = ROOT / "images" / row.spec.family / row.name
        assert (folder / "Dockerfile").is_file() and (folder / render.placed(row, "packages.txt")).is_file(), folder
        assert not list(folder.rglob("*.crt")), "host-specific CA certificates are never committed"
        assert (ROOT / "packer" / row.name).is_dir()
    assert render.stale_folders(live_project) == []


def test_the_drift_check_names_what_a_matrix_change_leaves_stale(write_matrix, tmp_path, no_ca):
    m = matrix.load(write_matrix(MINIMAL))
    rows = m.select("all")
    render.render(m, rows, log=lambda _: None)
    render.check(m, rows, log=lambda _: None)
    edited = matrix.load(write_matrix(MINIMAL.replace("[build-essential]", "[build-essential, libssl-dev]")))
    lines = []
    with pytest.raises(render.FleetbakeError, match=r"differ from a fresh render in: images/debian/debian-12"):
        render.check(edited, edited.select("all"), log=lines.append)
    row = m.rows["debian-12"]
    assert f"images/debian/debian-12/: differs: {render.placed(row, 'packages.txt')}" in lines
    create_user = render.placed(row, "scripts/create-user.sh")
    script = tmp_path / "images/debian/debian-12" / create_user
    script.chmod(0o644)  # a checkout that lost the executable bit builds an image whose RUN fails
    with pytest.raises(render.FleetbakeError):
        render.check(m, rows, log=lines.append)
    assert f"images/debian/debian-12/: differs: {create_user}" in lines
    script.chmod(0o755)
    (tmp_path / "images/debian/debian-12/NOTES.txt").write_text("a stray file is drift too\n")
    with pytest.raises(render.FleetbakeError):
        render.check(m, rows, log=lines.append)
    assert "images/debian/debian-12/: differs: NOTES.txt" in lines


def test_a_row_that_left_the_matrix_is_drift_and_render_removes_its_output(write_matrix, tmp_path, no_ca):
    two = MINIMAL + """
  debian-13:
    family: debian
    base: debian:13
    packages: [build-essential]
    configurations: [pydebug]
"""
    render.render(matrix.load(write_matrix(two)), matrix.load(write_matrix(two)).select("all"), log=lambda _: None)
    assert (tmp_path / "images/debian/debian-13/Dockerfile").is_file()
    one = matrix.load(write_matrix(MINIMAL))
    with pytest.raises(render.FleetbakeError, match="debian-13"):
        render.check(one, one.select("all"), log=lambda _: None)
    render.render(one, one.select("all"), log=lambda _: None)
    assert not (tmp_path / "images/debian/debian-13").exists() and not (tmp_path / "packer/debian-13").exists()
    render.check(one, one.select("all"), log=lambda _: None)


def test_a_row_named_like_a_source_folder_is_refused(write_matrix, tmp_path, no_ca):
    sources = tmp_path / "images" / "debian" / "scripts"
    sources.mkdir(parents=True)
    (sources / "configure-apt.sh").write_text("#!/bin/sh\n")
    m = matrix.load(write_matrix(MINIMAL.replace("  debian-12:\n", "  scripts:\n")))
    with pytest.raises(UsageError, match="holds files render did not write"):
        render.render(m, m.select("all"), log=lambda _: None)
    assert sorted(p.name for p in sources.iterdir()) == ["configure-apt.sh"]


def test_the_build_context_is_the_committed_folder_plus_the_hosts_ca_certificates(live_project, tmp_path):
    bundle = tmp_path / "proxy.pem"
    bundle.write_bytes(CERT)
    for row in live_project.rows.values():
        context = render.render_row(live_project, row, render.ca_certs_from(str(bundle)))
        folder = ROOT / "images" / row.spec.family / row.name
        committed = {p.relative_to(folder).as_posix() for p in folder.rglob("*") if p.is_file()} - {render.MANIFEST}
        assert set(context) - committed == {in_context(row, "ca-certificates/fleetbake-extra-001.crt")}, row.name
        assert all(context[name].content == (folder / name).read_bytes() for name in committed), row.name


def test_copied_files_are_the_sources_plus_the_header(project, no_ca):
    row = project.rows["debian-12"]
    family = families.family_of(row)
    origins = {f"scripts/{Path(name).name}": ROOT / "images" / name for name in family.scripts}
    origins.update(dict(family.runtime_files))
    context = render.render_row(project, row)
    where = {name: in_context(row, name) for name in origins}
    assert set(where.values()) <= set(context) and len(set(where.values())) == len(origins) >= 8
    for name, origin in origins.items():
        source = origin.read_text().splitlines()
        rendered = context[where[name]].content.decode().splitlines()
        position = 1 if rendered and rendered[0].startswith("#!") else 0
        assert rendered[position].startswith("# Generated from matrix.yml")
        assert rendered[:position] + rendered[position + 1 :] == source, name
        assert context[where[name]].executable == name.startswith("scripts/"), name


def test_render_is_deterministic_and_every_file_says_generated(project, tmp_path, no_ca):
    rows = project.select("all")
    out = tmp_path / "contexts"
    first = render.assemble(project, rows, out_root=out)
    second = render.assemble(project, rows, out_root=out)
    assert {k: render.context_digest(v) for k, v in first.items()} == {
        k: render.context_digest(v) for k, v in second.items()
    }
    for name, context in first.items():
        for path, item in context.items():
            lines = item.content.decode().splitlines()
            head = lines[1] if lines[0].startswith("#!") else lines[0]
            assert "Generated from matrix.yml" in head and "do not edit" in head, f"{name}/{path}"
            assert (out / name / path).read_bytes() == item.content
        row = project.rows[name]
        scripts = [out / name / in_context(row, f"scripts/{Path(s).name}") for s in families.family_of(row).scripts]
        assert scripts and all(os.access(script, os.X_OK) for script in scripts), name


def test_dockerfile_builds_with_the_classic_builder(project, no_ca):
    for row in project.rows.values():
        text = render.render_row(project, row)["Dockerfile"].content.decode()
        dockerfile = "\n".join(line for line in text.splitlines() if not line.startswith("#"))
        assert "RUN --mount" not in dockerfile
        assert not re.search(r"<<-?\s*['\"]?[A-Z]+", dockerfile), "heredocs need BuildKit"
        assert "COPY --chmod" not in dockerfile
        # The row's base by default; invoke build --arch passes another architecture's root file system.
        assert dockerfile.splitlines()[:2] == [f"ARG BASE={row.spec.base}", "FROM ${BASE}"]


def test_packages_come_from_the_matrix(project, no_ca):
    row = project.rows["debian-12"]
    listed = render.render_row(project, row)[render.placed(row, "packages.txt")].content.decode().splitlines()
    packages = [line for line in listed if line and not line.startswith("#")]
    # buildbot-worker's compiled dependencies come from Debian: its packages exist for every architecture.
    compiled = ["python3-cryptography", "python3-msgpack", "python3-zope.interface"]
    assert packages == ["ca-certificates", "python3-venv", "tini", "ccache", *compiled, *row.all_packages]


def test_a_linux_context_keeps_each_file_in_its_layers_tree_and_its_tar_has_every_folder(project, no_ca):
    """Layer n's files sit under layers/<n>/ as the image lays them out (one `COPY layers/<n>/ /`), and the tar
    has an entry for every folder at time 0: the image's folders take their times from the context's."""
    import io
    import tarfile

    row = project.rows["debian-12"]
    context = render.render_row(project, row, [CERT])
    # The layout itself.
    assert render.placed(row, "packages.txt") == "layers/1/opt/fleetbake/provision/packages.txt"
    assert render.placed(row, "scripts/normalize-layer.sh") == "layers/1/opt/fleetbake/provision/normalize-layer.sh"
    assert render.placed(row, "fleetbake/") == "layers/3/opt/fleetbake/fleetbake/"
    assert {"layers/1/opt/fleetbake/provision/packages.txt", "layers/3/opt/fleetbake/fleetbake/__init__.py",
            "layers/3/opt/fleetbake/fleetbake/worker/entrypoint.py",
            "layers/2/opt/fleetbake/ca-certificates/fleetbake-extra-001.crt"} <= set(context)
    # Every file but the Dockerfile is in the tree of a layer that copies files, inside one of its COPY's folders.
    plan = families.plan(row)
    for name in set(context) - {"Dockerfile"}:
        found = re.fullmatch(r"layers/([1-9][0-9]*)/(.+)", name)
        assert found and 1 <= int(found[1]) <= len(plan.layers), name
        dests = [copy.dest for copy in plan.layers[int(found[1]) - 1].copies]
        assert any(f"/{found[2]}".startswith(f"{dest}/") for dest in dests), (name, dests)
    # The tar: exactly the context's files, and one folder entry, mode 0755 and time 0, for every folder.
    members = tarfile.open(fileobj=io.BytesIO(render.context_tar(context))).getmembers()
    files = {m.name: m for m in members if m.isfile()}
    folders = {m.name: m for m in members if m.isdir()}
    assert len(files) + len(folders) == len(members) and set(files) == set(context)
    expected = {"/".join(name.split("/")[:i]) for name in context for i in range(1, name.count("/") + 1)}
    assert {"layers", "layers/1", "layers/3/opt/fleetbake/fleetbake/worker"} <= expected
    assert set(folders) == expected
    assert all(m.mtime == 0 and m.mode == 0o755 for m in folders.values())
    assert all(m.mtime == 0 for m in files.values())
    # A Windows row's context keeps the logical names.
    windows = project.rows["windows-2022"]
    assert render.placed(windows, "packages.txt") == "packages.txt"
    assert not any(name.startswith("layers/") for name in render.render_row(project, windows))


def test_ca_bundle_is_split_into_one_certificate_a_file(project, tmp_path, monkeypatch):
    bundle = tmp_path / "proxy.pem"
    other = CERT.replace(b"fake", b"other")
    bundle.write_bytes(b"junk\n" + CERT + other + CERT)  # a duplicate is dropped
    monkeypatch.setenv("FLEETBAKE_CA_BUNDLE", str(bundle))
    row = project.rows["debian-12"]
    context = render.render_row(project, row, render.ca_certs_from(None))
    certs = sorted(k for k in context if k.endswith(".crt"))
    assert certs == [in_context(row, "ca-certificates/fleetbake-extra-001.crt"),
                     in_context(row, "ca-certificates/fleetbake-extra-002.crt")]
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
    second = in_context(row, "ca-certificates/fleetbake-extra-002.crt")
    render.assemble(project, [row], str(two), out_root=root)
    assert (out / second).is_file()
    (out / "Dockerfile").write_text((out / "Dockerfile").read_text() + "RUN echo hand-edit\n")
    fresh = render.render_row(project, row, render.ca_certs_from(str(one)))
    assert render.diff_context(fresh, out) == ["Dockerfile", second]
    changed = render.write_context(fresh, out)
    assert sorted(changed) == ["Dockerfile", second]
    assert not (out / second).exists()
    assert render.diff_context(fresh, out) == []


def test_bad_input_through_the_cli_leaves_the_previous_render_untouched(tmp_path, write_matrix):
    env = {"FLEETBAKE_BUILD_DIR": str(tmp_path / "b"), "FLEETBAKE_CA_BUNDLE": ""}
    good = write_matrix(MINIMAL, "good.yml")
    first = invoke("render", "--matrix", str(good), env=env)
    assert first.returncode == 0, first.stderr
    before = {**snapshot(tmp_path / "images"), **snapshot(tmp_path / "packer")}
    assert "debian/debian-12/Dockerfile" in before and "debian-12/docker/docker.pkr.hcl" in before, before.keys()

    bad_matrix = write_matrix(MINIMAL.replace("[build-essential]", "[build-essential, 'x&&y']"), "bad.yml")
    cases = [
        (["--matrix", str(bad_matrix)],
         f"error: {bad_matrix}:9: rows.debian-12.packages[1]: 'x&&y' is not a safe package name (allowed: "),
        (["--matrix", str(good), "--os", "gentoo-1"], f"error: {good}: --os: unknown row 'gentoo-1' (known: debian-12)"),
    ]
    for args, message in cases:
        result = invoke("render", *args, env=env)
        assert result.returncode == 2, (args, result.stdout, result.stderr)
        assert len(result.stderr.splitlines()) == 1 and result.stderr.startswith(message), (args, result.stderr)
        assert "Traceback" not in result.stderr + result.stdout
        assert {**snapshot(tmp_path / "images"), **snapshot(tmp_path / "packer")} == before, f"render {args} changed it"
    check = invoke("render", "--matrix", str(good), "--check", env=env)
    assert check.returncode == 0 and "up to date" in check.stdout + check.stderr, check.stderr
    (tmp_path / "images/debian/debian-12/Dockerfile").write_text("FROM hand-edited\n")
    check = invoke("render", "--matrix", str(good), "--check", env=env)
    assert check.returncode != 0 and "images/debian/debian-12" in check.stderr, (check.stdout, check.stderr)


def test_a_bad_ca_bundle_after_a_good_render_changes_nothing(project, build_dir, tmp_path):
    proxy = tmp_path / "proxy.pem"
    proxy.write_bytes(CERT)
    rows = project.select("all")
    contexts = render.assemble(project, rows, str(proxy))
    assert all(in_context(project.rows[name], "ca-certificates/fleetbake-extra-001.crt") in context
               for name, context in contexts.items())
    before = snapshot(build_dir)
    assert len([n for n in before if n.endswith("/Dockerfile")]) == len(rows)
    empty = tmp_path / "empty.pem"
    empty.write_text("-----BEGIN CERTIFICATE-----\ntruncated\n")
    with pytest.raises(UsageError, match=f"CA bundle {empty}: no PEM certificates found"):
        render.assemble(project, rows, str(empty))
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
        contexts = render.assemble(m, m.select("all"))
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
    mine = in_context(row, "ca-certificates/mine.crt")  # beside the certificates render writes
    render.assemble(project, [row], str(bundle), out_root=out)
    (out / row.name / "NOTES.txt").write_text("the user's own\n")
    (out / row.name / mine).write_text("the user's own cert\n")
    render.assemble(project, [row], "", out_root=out)  # the extra CA is gone from this render
    assert not (out / row.name / in_context(row, "ca-certificates/fleetbake-extra-001.crt")).exists()
    assert (out / row.name / "NOTES.txt").read_text() == "the user's own\n"
    assert (out / row.name / mine).exists()
    # ...and the build never sees it: it reads the rendered context, not the folder.
    import io
    import tarfile

    names = tarfile.open(fileobj=io.BytesIO(render.context_tar(render.render_row(project, row)))).getnames()
    assert "NOTES.txt" not in names and mine not in names and "Dockerfile" in names


def test_render_never_writes_through_a_symlink_out_of_its_folder(project, tmp_path, no_ca):
    row = project.rows["debian-12"]
    out, elsewhere = tmp_path / "out", tmp_path / "elsewhere"
    elsewhere.mkdir()
    scripts = out / row.name / Path(render.placed(row, "scripts/create-user.sh")).parent  # the scripts' folder
    scripts.parent.mkdir(parents=True)
    scripts.symlink_to(elsewhere)
    with pytest.raises(UsageError, match="leads outside"):
        render.assemble(project, [row], "", out_root=out)
    assert list(elsewhere.iterdir()) == []
