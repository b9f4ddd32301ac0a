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
