"""Render a matrix row into a self-contained Docker build context under build/contexts/<row>/.

Templates and provisioning scripts live in images/<family>/ and images/common/.
Output is deterministic (same inputs, same bytes) and written only after the
whole context rendered, one atomic rename per file.
"""

from __future__ import annotations

import hashlib
import io
import os
import re
import tarfile
import tempfile
from dataclasses import dataclass
from pathlib import Path

import jinja2

from . import paths
from .errors import FleetbakeError, UsageError
from .matrix import Matrix, RowView

IMAGE_REPO = "fleetbake/worker"
PROVISION_DIR = "/opt/fleetbake/provision"
PREFLIGHT = Path(__file__).with_name("preflight.py")  # the same checks as `invoke preflight`
HOSTPORT = Path(__file__).with_name("hostport.py")  # the one host:port parser, for entrypoint and preflight


@dataclass(frozen=True)
class Family:
    """A family's Dockerfile template, and what its build context holds besides packages.txt."""

    dockerfile: str  # template, relative to images/
    runtime_packages: tuple[str, ...]  # what the image needs at run time, beyond the row's
    scripts: tuple[str, ...]  # provisioning scripts, relative to images/
    runtime_files: tuple[Path, ...]  # copied to the context's top level
    configure: str = ""  # the package manager's set-up script (Linux), run before install-packages.sh


LINUX_SCRIPTS = ("common/scripts/install-ca.sh", "common/scripts/create-user.sh", "common/scripts/install-worker.sh")
LINUX_RUNTIME = (paths.IMAGES / "common" / "entrypoint.py", paths.IMAGES / "common" / "buildbot.tac", PREFLIGHT, HOSTPORT)


def _linux(name: str, configure: str, runtime_packages: tuple[str, ...]) -> Family:
    scripts = (f"{name}/scripts/{configure}", f"{name}/scripts/install-packages.sh", *LINUX_SCRIPTS)
    return Family("common/Dockerfile.j2", runtime_packages, scripts, LINUX_RUNTIME, configure)


FAMILIES = {
    "debian": _linux("debian", "configure-apt.sh", ("ca-certificates", "python3-venv", "tini")),
    "fedora": _linux("fedora", "configure-dnf.sh", ("ca-certificates", "python3", "tini", "util-linux", "shadow-utils")),
    "windows": Family("windows/Dockerfile.j2", (), ("windows/scripts/Install-BuildTools.ps1",
                      "windows/scripts/Install-CaCertificates.ps1", "windows/scripts/Install-Worker.ps1"),
                      (paths.IMAGES / "windows" / "entrypoint.ps1",)),
}
PEM_CERT = re.compile(rb"-----BEGIN CERTIFICATE-----\r?\n.+?-----END CERTIFICATE-----", re.DOTALL)


@dataclass(frozen=True)
class RenderedFile:
    content: bytes
    executable: bool = False


Context = dict[str, RenderedFile]


def header(matrix: Matrix, row: RowView, comment: str = "#") -> str:
    return (
        f"{comment} Generated from {matrix.path.name} (row {row.name}) by fleetbake: do not edit."
        f" Change the matrix or images/, then run `invoke render`."
    )


def _with_header(text: str, head: str) -> str:
    """The header is the first line, or the second where a shebang must stay first."""
    if text.startswith("#!"):
        shebang, _, rest = text.partition("\n")
        return f"{shebang}\n{head}\n{rest}"
    return f"{head}\n{text}"


def image_tag(row: RowView) -> str:
    return f"{IMAGE_REPO}:{row.name}"


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


def render_row(matrix: Matrix, row: RowView, ca_certs: list[bytes] | None = None) -> Context:
    family = FAMILIES[row.spec.family]
    head = header(matrix, row)
    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(str(paths.IMAGES)),
        undefined=jinja2.StrictUndefined,
        keep_trailing_newline=True,
        autoescape=False,
    )
    dockerfile = env.get_template(family.dockerfile).render(
        header=head, row=row, family=family, provision=PROVISION_DIR, image=image_tag(row)
    )
    context: Context = {"Dockerfile": RenderedFile(dockerfile.encode())}

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
    for source in family.runtime_files:
        context[source.name] = RenderedFile(_with_header(source.read_text(), head).encode(), source.suffix == ".py")

    readme = "Extra CA certificates baked into the image's trust store (FLEETBAKE_CA_BUNDLE or --ca-bundle).\n"
    context["ca-certificates/README.txt"] = RenderedFile(f"{head}\n{readme}".encode())
    for index, cert in enumerate(ca_certs or [], start=1):
        context[f"ca-certificates/fleetbake-extra-{index:03d}.crt"] = RenderedFile(head.encode() + b"\n" + cert)
    return context


def context_digest(context: Context) -> str:
    digest = hashlib.sha256()
    for name in sorted(context):
        item = context[name]
        digest.update(f"{name}\0{int(item.executable)}\0{len(item.content)}\0".encode())
        digest.update(item.content)
    return digest.hexdigest()


def write_file(target: Path, content: bytes, mode: int) -> None:
    """Atomically: readers see the old file or the new one, never half of it."""
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.")
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(content)
        os.chmod(tmp, mode)
        os.replace(tmp, target)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


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
    """Names that differ between a fresh render and what is on disk (the drift check)."""
    drift = []
    for name, item in sorted(context.items()):
        target = out_dir / name
        if not target.is_file() or target.read_bytes() != item.content:
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
    with tarfile.open(fileobj=buffer, mode="w", format=tarfile.PAX_FORMAT) as archive:
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


def render(matrix: Matrix, rows: list[RowView], ca_bundle: str | None = None, out_root: Path | None = None) -> dict[str, Context]:
    """Render every row in memory first, so bad input leaves all previous output untouched."""
    certs = ca_certs_from(ca_bundle)
    contexts = {row.name: render_row(matrix, row, certs) for row in rows}
    root = out_root or paths.contexts_dir()
    for name, context in contexts.items():
        write_context(context, root / name)
    return contexts


def check(matrix: Matrix, rows: list[RowView], ca_bundle: str | None = None, out_root: Path | None = None, log=print) -> None:
    """The drift check: re-render in memory and compare with build/contexts/<row>/."""
    certs = ca_certs_from(ca_bundle)
    root = out_root or paths.contexts_dir()
    drifted = {}
    for row in rows:
        drift = diff_context(render_row(matrix, row, certs), root / row.name)
        if drift:
            drifted[row.name] = drift
        log(f"{root / row.name}/: {'differs: ' + ', '.join(drift) if drift else 'up to date'}")
    if drifted:
        raise FleetbakeError(f"generated files differ from a fresh render in: {', '.join(drifted)} (run `invoke render`)")
