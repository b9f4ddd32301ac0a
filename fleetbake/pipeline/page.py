"""The matrix page: build/reports/index.html, rows x configurations, from the verification records.

One cell per configuration a row declares, showing the newest record of that row's newest verified
image: pass or fail (and why), compile and test times, tests run and skipped, missing modules, and
links to the log and JUnit file beside the record. A configuration with no record says so: rows that
cannot be built on this machine (Fedora, Windows) show "not verified here", never a pass.
Each row names its image, its size when the record knows it, the CPython source verified and when,
with links to the image's SBOM and software report when they exist. The page is static, has its
styles inline and only relative links, so it reads the same from a file:// URL and on GitHub Pages.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import jinja2

from fleetbake import files, paths
from fleetbake.pipeline import record as records, sbom, software
from fleetbake.pipeline.matrix import Matrix

PAGE = "index.html"
TEMPLATE = "index.html.j2"
# In the image/ folder beside the records, when `invoke report` made them.
SBOM = sbom.SBOM
SOFTWARE_REPORT = software.REPORT_MD
COMPILE_STEPS = ("configure", "make", "build")  # build: the Windows plan's build.bat


@dataclass
class Cell:
    configuration: str
    record: dict | None = None
    folder: str = ""  # the image's folder, relative to the page

    @property
    def state(self) -> str:
        if self.record is None:
            return "none"
        return "pass" if self.record.get("passed") is True else "fail"

    def seconds(self, *names: str) -> float | None:
        steps = [s for s in (self.record or {}).get("steps", []) if isinstance(s, dict) and s.get("name") in names]
        return sum(float(s.get("seconds") or 0) for s in steps) if steps else None

    @property
    def compile_seconds(self) -> float | None:
        return self.seconds(*COMPILE_STEPS)

    @property
    def test_seconds(self) -> float | None:
        return self.seconds("tests")

    @property
    def tests(self) -> dict:
        tests = (self.record or {}).get("tests")
        return tests if isinstance(tests, dict) else {}

    @property
    def missing_modules(self) -> list[str]:
        return [str(m) for m in (self.record or {}).get("missing_modules") or []]

    def link(self, name: str | None) -> str | None:
        return f"{self.folder}/{name}" if name and self.folder else None

    @property
    def log(self) -> str | None:
        return self.link(f"{self.configuration}.log") if self.record else None

    @property
    def junit(self) -> str | None:
        return self.link((self.record or {}).get("junit"))


@dataclass
class RowPage:
    name: str
    cells: list[Cell]
    image_id: str | None = None
    folder: str = ""
    size: int | None = None
    extras: dict[str, str] = field(default_factory=dict)  # label -> relative link (SBOM, software report)

    @property
    def newest(self) -> dict | None:
        records = [c.record for c in self.cells if c.record]
        return max(records, key=lambda r: str(r.get("finished", ""))) if records else None


def _records(reports: Path) -> list[tuple[Path, dict]]:
    """Every readable record under reports/<image folder>/<configuration>.json that names its own image."""
    found = []
    for path in sorted(reports.glob("*/*.json")):
        try:
            record = json.loads(path.read_text())
        except (OSError, ValueError):
            continue
        if (isinstance(record, dict) and isinstance(record.get("image_id"), str)
                and path.parent.name == record["image_id"].replace(":", "-")
                and path.stem == record.get("configuration")):
            found.append((path, record))
    return found


def _when(path: Path, record: dict) -> tuple[str, int]:
    """When a record was written: its `finished` (whole seconds), then its file's time, for records of one second."""
    try:
        written = path.stat().st_mtime_ns
    except OSError:
        written = 0
    return str(record.get("finished", "")), written


def collect(matrix: Matrix, reports: Path | None = None) -> list[RowPage]:
    """Per matrix row and architecture with records: its newest verified image (the one whose newest record is
    newest) and that image's records; a row without any, once, empty. A row's first architecture is shown under the
    row's name, the others as "<row> <arch>" (the nightly's page merges every architecture's records)."""
    reports = reports or paths.reports_dir()
    by_image: dict[str, dict[str, tuple[Path, dict]]] = {}
    for path, record in _records(reports):
        by_image.setdefault(record["image_id"], {})[record["configuration"]] = (path, record)
    pages = []
    for row in matrix.rows.values():
        mine = {image: found for image, found in by_image.items()
                if any(record.get("row") == row.name for _, record in found.values())}
        if not mine:
            pages.append(RowPage(row.name, [Cell(name) for name in row.configurations]))
            continue
        for arch in row.spec.arches:
            images = {image: found for image, found in mine.items()
                      if any(records.arch_of(record) == arch for _, record in found.values())}
            if images:
                name = row.name if arch == row.spec.arches[0] else f"{row.name} {arch}"
                pages.append(_page(row, name, images, reports))
    return pages


def _page(row, title: str, images: dict[str, dict[str, tuple[Path, dict]]], reports: Path) -> RowPage:
    image_id = max(images, key=lambda image: max(_when(path, r) for path, r in images[image].values()))
    found = images[image_id]
    folder = image_id.replace(":", "-")
    cells = [Cell(name, found[name][1] if name in found else None, folder) for name in row.configurations]
    size = next((r.get("image", {}).get("size") for _, r in found.values()
                 if isinstance(r.get("image"), dict) and isinstance(r["image"].get("size"), int)), None)
    extras = {label: f"{folder}/{records.IMAGE_DIR}/{name}"
              for label, name in (("SBOM", SBOM), ("software report", SOFTWARE_REPORT))
              if (reports / folder / records.IMAGE_DIR / name).is_file()}
    return RowPage(title, cells, image_id, folder, size, extras)


def duration(seconds: float | None) -> str:
    if seconds is None:
        return "–"
    minutes, rest = divmod(int(round(seconds)), 60)
    return f"{minutes}m{rest:02d}s" if minutes else f"{rest}s"


def megabytes(size: int | None) -> str:
    return "size not recorded" if size is None else f"{size / 1_000_000:.0f} MB"


def render(matrix: Matrix, reports: Path | None = None, generated: str = "") -> str:
    reports = reports or paths.reports_dir()
    rows = collect(matrix, reports)
    names = list(dict.fromkeys(c for r in matrix.rows.values() for c in r.configurations))
    env = jinja2.Environment(loader=jinja2.FileSystemLoader(str(paths.IMAGES / "report")),
                             undefined=jinja2.ChainableUndefined, autoescape=True, keep_trailing_newline=True)
    env.filters["duration"] = duration
    env.filters["megabytes"] = megabytes
    failing = sum(1 for r in rows for c in r.cells if c.state == "fail")
    return env.get_template(TEMPLATE).render(rows=rows, names=names, failing=failing, generated=generated,
                                             matrix=matrix.path.name)


def write(matrix: Matrix, reports: Path | None = None, generated: str = "") -> Path:
    """Write the page atomically beside the records; return its path."""
    reports = reports or paths.reports_dir()
    target = reports / PAGE
    files.write_text(target, render(matrix, reports, generated))
    return target
