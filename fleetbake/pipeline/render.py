"""Render a matrix row into a self-contained Docker build context.

The committed one is images/<family>/<row>/ (what `docker build` alone needs);
`invoke build` adds the host's extra CA certificates and builds build/contexts/<row>/.
The Dockerfile comes from the row's plan (families.py) and images/Dockerfile.j2.
Output is deterministic (same inputs, same bytes) and written only after the
whole context rendered, one atomic rename per file.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import re
import tarfile
from dataclasses import dataclass
from pathlib import Path

import jinja2

from fleetbake import paths
from fleetbake.errors import FleetbakeError, UsageError
from fleetbake.files import write_file
from fleetbake.pipeline import families
from fleetbake.pipeline.matrix import Matrix, RowView

PEM_CERT = re.compile(rb"-----BEGIN CERTIFICATE-----\r?\n.+?-----END CERTIFICATE-----", re.DOTALL)


@dataclass(frozen=True)
class RenderedFile:
    content: bytes
    executable: bool = False


Context = dict[str, RenderedFile]


def header(matrix: Matrix, row: RowView, comment: str = "#") -> str:
    """The first line of every generated file (the second after a shebang)."""
    return (
        f"{comment} Generated from {matrix.path.name} (row {row.name}) by fleetbake: do not edit."
        f" Change the matrix, images/ or fleetbake/worker/, then run `invoke render`."
    )


def _with_header(text: str, head: str) -> str:
    """The header is the first line, or the second where a shebang must stay first."""
    if text.startswith("#!"):
        shebang, _, rest = text.partition("\n")
        return f"{shebang}\n{head}\n{rest}"
    return f"{head}\n{text}"


def load_ca_bundle(path: str | os.PathLike[str]) -> list[bytes]:
    """Split a PEM bundle into single certificates (update-ca-certificates wants one a file)."""
    try:
        data = Path(path).read_bytes()
    except OSError as exc:
        raise UsageError(f"CA bundle {path}: cannot read: {exc.strerror or exc}") from None
    certs = [m.group(0).replace(b"\r\n", b"\n") + b"\n" for m in PEM_CERT.finditer(data)]
    if not certs:
        raise UsageError(f"CA bundle {path}: no PEM certificates found")
    return list(dict.fromkeys(certs))


def dockerfile(matrix: Matrix, row: RowView) -> str:
    """The row's Dockerfile, from its family's provisioning plan (families.py) and the one template."""
    family = families.family_of(row)
    plan = family.plan(row)
    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(str(paths.IMAGES)),
        undefined=jinja2.StrictUndefined,
        keep_trailing_newline=True,
        autoescape=False,
    )
    if family.windows:
        copies = [[f"{' '.join(c.sources)} {c.dest}/" for c in layer.copies] for layer in plan.layers]
        runs = [" \\\n && ".join(run.line(True) for run in layer.runs) for layer in plan.layers]
    else:
        # Each layer's files in one COPY to /, and each RUN ends by normalizing its layer: the same inputs, the same image.
        copies = [[f"{families.LAYERS_DIR}/{n}/ /"] if layer.copies else [] for n, layer in enumerate(plan.layers, 1)]
        normalize = f'{families.PROVISION}/{families.NORMALIZE} "$started"'
        runs = [" \\\n && ".join(["started=$(date +%s)", *(run.line() for run in layer.runs), normalize])
                if layer.runs else "" for layer in plan.layers]
    return env.get_template("Dockerfile.j2").render(
        header=header(matrix, row), row=row, family=family, layers=list(zip(copies, runs)),
        runtime=plan.runtime.dockerfile().rstrip("\n"), shell=json.dumps(families.WINDOWS_SHELL) if family.windows else "")


def render_row(matrix: Matrix, row: RowView, ca_certs: list[bytes] | None = None) -> Context:
    family = families.family_of(row)
    head = header(matrix, row)
    context: Context = {"Dockerfile": RenderedFile(dockerfile(matrix, row).encode())}

    packages = "\n".join(
        [
            head,
            "# Worker runtime",
            *family.runtime_packages,
            "# CPython build dependencies (matrix row)",
            *row.all_packages,
        ]
    )
    context["packages.txt"] = RenderedFile((packages + "\n").encode())

    for name in family.scripts:
        script = paths.IMAGES / name
        context[f"scripts/{script.name}"] = RenderedFile(_with_header(script.read_text(), head).encode(), True)
    if not family.windows:
        requirements = paths.IMAGES / "common" / families.WORKER_REQUIREMENTS
        context[families.WORKER_REQUIREMENTS] = RenderedFile(_with_header(requirements.read_text(), head).encode())
    for name, source in family.runtime_files:  # run with `python -m`: none is executable
        context[name] = RenderedFile(_with_header(source.read_text(), head).encode())

    readme = "Extra CA certificates baked into the image's trust store (FLEETBAKE_CA_BUNDLE or --ca-bundle).\n"
    context["ca-certificates/README.txt"] = RenderedFile(f"{head}\n{readme}".encode())
    for index, cert in enumerate(ca_certs or [], start=1):
        context[f"ca-certificates/fleetbake-extra-{index:03d}.crt"] = RenderedFile(head.encode() + b"\n" + cert)
    return context if family.windows else _place(context, family.plan(row).placed())


def placed(row: RowView, name: str) -> str:
    """Where a file of the row's context (e.g. packages.txt) sits: Linux contexts keep it in its layer's tree."""
    family = families.family_of(row)
    return name if family.windows else next(iter(_place({name: RenderedFile(b"")}, family.plan(row).placed())))


def _place(context: Context, placed: dict[str, str]) -> Context:
    """The context with each copied file where its layer's tree has it (families.Plan.placed)."""
    folders = sorted((source for source in placed if source.endswith("/")), key=len, reverse=True)
    out: Context = {}
    for name, item in context.items():
        if name in placed:
            out[placed[name]] = item
            continue
        folder = next((f for f in folders if name.startswith(f)), None)
        out[placed[folder] + name[len(folder):] if folder else name] = item
    return out


def context_digest(context: Context) -> str:
    digest = hashlib.sha256()
    for name in sorted(context):
        item = context[name]
        digest.update(f"{name}\0{int(item.executable)}\0{len(item.content)}\0".encode())
        digest.update(item.content)
    return digest.hexdigest()


MANIFEST = ".fleetbake-rendered"  # what render wrote into a folder: the only files it may delete


def _manifest(out_dir: Path) -> list[str]:
    try:
        names = (out_dir / MANIFEST).read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError):
        return []
    # Only plain relative names: a hand-edited manifest must not reach outside the folder.
    return [n for n in names if n and not n.startswith("/") and ".." not in n.split("/")]


def write_context(context: Context, out_dir: Path) -> list[str]:
    """Write atomically; drop files that an earlier render wrote and this one no longer does.

    Files render did not write (the user's own) are never touched. Returns the names that changed.
    """
    out_dir.mkdir(parents=True, exist_ok=True)
    top, previous = out_dir.resolve(), _manifest(out_dir)
    for name in [*context, *previous]:  # a symlinked folder must not lead writes or deletes elsewhere
        if not (out_dir / name).resolve().is_relative_to(top):
            raise UsageError(f"{out_dir / name}: leads outside {out_dir} (a symlink?); render writes only inside it")
    changed = []
    for name in sorted(context):
        item = context[name]
        target = out_dir / name
        mode = 0o755 if item.executable else 0o644
        if target.is_file() and target.read_bytes() == item.content and (target.stat().st_mode & 0o777) == mode:
            continue
        write_file(target, item.content, mode)
        changed.append(name)
    for stale in previous:
        target = out_dir / stale
        if stale not in context and target.is_file() and not target.is_symlink():
            target.unlink()
            changed.append(stale)
            _prune_empty(target.parent, out_dir)
    write_file(out_dir / MANIFEST, "".join(f"{name}\n" for name in sorted(context)).encode(), 0o644)
    return changed


def _prune_empty(directory: Path, top: Path) -> None:
    while directory != top and directory.is_dir() and not any(directory.iterdir()):
        directory.rmdir()
        directory = directory.parent


def diff_context(context: Context, out_dir: Path) -> list[str]:
    """Names that differ between a fresh render and what is on disk (the drift check): bytes, and whether a
    file is executable (`docker build` of the committed folder takes its modes from the checkout)."""
    drift = []
    for name, item in sorted(context.items()):
        target = out_dir / name
        if not target.is_file() or target.read_bytes() != item.content or (
                bool(target.stat().st_mode & 0o111) != item.executable):
            drift.append(name)
    if out_dir.is_dir():
        drift += sorted(
            p.relative_to(out_dir).as_posix() for p in out_dir.rglob("*") if p.is_file() and
            p.relative_to(out_dir).as_posix() not in context and p.name != MANIFEST
        )
    return drift


def context_tar(context: Context) -> bytes:
    """The build context as a tar, exactly what was hashed: stray files in the folder never reach the build."""
    buffer = io.BytesIO()
    # Folders too, with the files' fixed time: `COPY layers/<n>/ /` gives the image's folders the context's times.
    folders = sorted({"/".join(name.split("/")[:i]) for name in context for i in range(1, name.count("/") + 1)})
    with tarfile.open(fileobj=buffer, mode="w", format=tarfile.PAX_FORMAT) as archive:
        for folder in folders:
            info = tarfile.TarInfo(folder)
            info.type, info.mode, info.mtime = tarfile.DIRTYPE, 0o755, 0
            archive.addfile(info)
        for name in sorted(context):
            item = context[name]
            info = tarfile.TarInfo(name)
            info.size, info.mode, info.mtime = len(item.content), 0o755 if item.executable else 0o644, 0
            archive.addfile(info, io.BytesIO(item.content))
    return buffer.getvalue()


def ca_certs_from(option: str | None) -> list[bytes] | None:
    """--ca-bundle, else FLEETBAKE_CA_BUNDLE, else SSL_CERT_FILE (what the host trusts); '' disables."""
    for source in (option, os.environ.get("FLEETBAKE_CA_BUNDLE"), os.environ.get("SSL_CERT_FILE")):
        if source is None:
            continue
        return load_ca_bundle(source) if source else None
    return None


def assemble(matrix: Matrix, rows: list[RowView], ca_bundle: str | None = None, out_root: Path | None = None) -> dict[str, Context]:
    """The build contexts `invoke build` and `invoke packer --build` read: the generated files plus the
    host's extra CA certificates, in build/contexts/<row>/. Every row renders in memory first."""
    certs = ca_certs_from(ca_bundle)
    contexts = {row.name: render_row(matrix, row, certs) for row in rows}
    root = out_root or paths.contexts_dir()
    for name, context in contexts.items():
        write_context(context, root / name)
    return contexts


def _generated_folder(out_dir: Path) -> Path:
    """A committed output folder must be render's own: a row named like a source folder (scripts, ami) is refused."""
    if out_dir.is_dir() and not (out_dir / MANIFEST).is_file() and any(out_dir.iterdir()):
        raise UsageError(f"{out_dir}: holds files render did not write (a source folder?); give the row another name")
    return out_dir


def stale_folders(matrix: Matrix) -> list[Path]:
    """Generated folders whose row left the matrix."""
    rows = {(row.spec.family, row.name) for row in matrix.rows.values()}
    root = paths.generated_root(matrix)
    found = [m.parent for m in root.glob(f"images/*/*/{MANIFEST}") if (m.parent.parent.name, m.parent.name) not in rows]
    names = {row.name for row in matrix.rows.values()}
    found += [m.parent for m in root.glob(f"packer/*/{MANIFEST}") if m.parent.name not in names]
    return sorted(found)


def render(matrix: Matrix, rows: list[RowView], log=print) -> list[Path]:
    """The committed output: images/<family>/<row>/ and packer/<row>/. Every row renders in memory
    first, so bad input leaves all previous output untouched."""
    from fleetbake.pipeline import packer  # packer builds on render

    contexts = {row.name: render_row(matrix, row) for row in rows}
    templates = {row.name: packer.render_templates(matrix, row) for row in rows}
    written = []
    for row in rows:
        image_dir = _generated_folder(paths.image_dir(matrix, row))
        write_context(contexts[row.name], image_dir)
        packer_dir = _generated_folder(paths.packer_dir(matrix) / row.name)
        write_context({name: RenderedFile(content) for name, content in templates[row.name].items()}, packer_dir)
        written += [image_dir, packer_dir]
    if len(rows) == len(matrix.rows):
        for folder in stale_folders(matrix):
            write_context({}, folder)
            (folder / MANIFEST).unlink()
            _prune_empty(folder, folder.parent.parent)
            log(f"removed {folder}/: its row left the matrix")
    return written


def check(matrix: Matrix, rows: list[RowView], log=print) -> None:
    """The drift check: re-render in memory and compare with the committed images/<family>/<row>/ and packer/<row>/."""
    from fleetbake.pipeline import packer

    drifted = []
    root = paths.generated_root(matrix)
    for row in rows:
        image_dir = paths.image_dir(matrix, row)
        for out_dir, drift in ((image_dir, diff_context(render_row(matrix, row), image_dir)),
                               (paths.packer_dir(matrix) / row.name, packer.check_row(matrix, row))):
            if drift:
                drifted.append(str(out_dir.relative_to(root)))
            log(f"{out_dir.relative_to(root)}/: {'differs: ' + ', '.join(drift) if drift else 'up to date'}")
    if len(rows) == len(matrix.rows):
        for folder in stale_folders(matrix):
            drifted.append(str(folder.relative_to(root)))
            log(f"{folder.relative_to(root)}/: its row left the matrix")
    if drifted:
        raise FleetbakeError(f"generated files differ from a fresh render in: {', '.join(drifted)} (run `invoke render`)")
