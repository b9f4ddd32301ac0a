#!/usr/bin/env python3
"""Regenerate tests/golden/<row>/ from matrix.yml, after an intended template change.

    .venv/bin/python tests/update_golden.py      # then review `git diff tests/golden` and commit

The tests only compare against these files; they never write them. Renders as a machine
with no extra CA would (FLEETBAKE_CA_BUNDLE empty), like the tests do.
"""

import os
import shutil
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from fleetbake import matrix, render  # noqa: E402

GOLDEN = ROOT / "tests" / "golden"
# The files the templates generate; the rest of a context are copies of images/ with a header line.
TEMPLATED = ("Dockerfile", "packages.txt")


def main() -> int:
    os.environ["FLEETBAKE_CA_BUNDLE"] = ""
    project = matrix.load(ROOT / "matrix.yml")
    for row in project.rows.values():
        context = render.render_row(project, row, render.ca_certs_from(None))
        golden, changed = GOLDEN / row.name, []
        for name in TEMPLATED:
            target = golden / name
            if not target.is_file() or target.read_bytes() != context[name].content:
                render.write_file(target, context[name].content, 0o644)
                changed.append(name)
        for extra in sorted(p for p in golden.iterdir() if p.name not in TEMPLATED):
            shutil.rmtree(extra) if extra.is_dir() else extra.unlink()
            changed.append(f"{extra.name} (removed)")
        print(f"tests/golden/{row.name}/: {', '.join(changed) if changed else 'unchanged'}")
    for stale in sorted(p for p in GOLDEN.iterdir() if p.is_dir() and p.name not in project.rows):
        shutil.rmtree(stale)
        print(f"tests/golden/{stale.name}/: removed (no such row in matrix.yml)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
