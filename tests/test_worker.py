"""fleetbake/worker/: the package every Linux image carries."""

import sys

from conftest import ROOT


def test_the_worker_package_is_stdlib_only_and_never_edits_its_import_path():
    """It runs in the image's worker venv as root (the supervisor) and as the build user (twistd)."""
    import ast

    package = ROOT / "fleetbake" / "worker"
    for path in [*package.glob("*.py"), package / "buildbot.tac", ROOT / "fleetbake" / "files.py", ROOT / "fleetbake" / "__init__.py"]:
        text = path.read_text()
        assert "sys.path" not in text, path.name
        for node in ast.walk(ast.parse(text)):
            names = [a.name for a in node.names] if isinstance(node, ast.Import) else [node.module or ""] if (
                isinstance(node, ast.ImportFrom) and node.level == 0) else []
            for name in names:
                top = name.split(".")[0]
                allowed = top in sys.stdlib_module_names or name.startswith("fleetbake.worker") or name == "fleetbake.files" or (
                    name == "fleetbake" and {a.name for a in node.names} <= {"files"})
                if path.name == "buildbot.tac":  # run by twistd, in the worker venv
                    allowed = allowed or top in ("buildbot_worker", "twisted")
                assert allowed, f"{path.name} imports {name}"


def test_the_copied_package_imports_alone_with_the_standard_library(project, tmp_path):
    """What the image gets (the rendered fleetbake/), imported by a Python that sees nothing else (-S: no
    site-packages, so not this checkout's editable install): a missing file or a non-stdlib import fails."""
    import subprocess

    from fleetbake.pipeline import render

    row = project.rows["debian-12"]
    context = render.render_row(project, row)
    folder = render.placed(row, "fleetbake/")  # where the context keeps it: the image's /opt/fleetbake/fleetbake/
    for name, item in context.items():
        if name.startswith(folder):
            target = tmp_path / "fleetbake" / name[len(folder):]
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(item.content)
    modules = sorted(f"fleetbake.worker.{p.stem}" for p in (tmp_path / "fleetbake" / "worker").glob("*.py")
                     if p.stem != "__init__")  # importing one changes nothing: each runs from a main()
    code = f"import sys; sys.path.insert(0, {str(tmp_path)!r}); " + "; ".join(f"import {m}" for m in modules) + (
        "; import fleetbake.worker.entrypoint as e; print(e.__file__)")
    result = subprocess.run([sys.executable, "-I", "-S", "-c", code], capture_output=True, text=True, cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == str(tmp_path / "fleetbake" / "worker" / "entrypoint.py")
    assert {"fleetbake.worker.entrypoint", "fleetbake.worker.preflight", "fleetbake.worker.hostport"} <= set(modules)


def test_the_image_carries_the_hunt_but_not_the_test_masters_other_steps(project):
    """forge_health and fill_disk are test helpers (fleetbake/devtools/): no worker image holds them. The hunt stays
    for owners (README, "Keeping your worker healthy")."""
    from fleetbake.pipeline import render

    row = project.rows["debian-12"]
    folder = render.placed(row, "fleetbake/worker/")
    shipped = {name[len(folder):] for name in render.render_row(project, row) if name.startswith(folder)}
    assert "hunt.py" in shipped and "entrypoint.py" in shipped
    assert not shipped & {"forge_health.py", "fill_disk.py"}, shipped

