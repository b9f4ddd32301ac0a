"""The software report of a worker image: what is inside it, and what changed since the previous one.

`collect(image_id)` runs software_collect.py with the image's own python3 in a container of the
image (no network, read-only, no capabilities) and adds the image's labels; `markdown(report)` is
the report in the style of actions/runner-images' image READMEs; `changes(old, new)` lists the
distribution and worker packages added, removed, upgraded and downgraded, ordered by the package
manager's own version order.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

from fleetbake.errors import FleetbakeError
from fleetbake.pipeline import engine, versions

REPORT_JSON = "software.json"
REPORT_MD = "software.md"
COLLECTOR = Path(__file__).with_name("software_collect.py")


def collect(image_id: str) -> dict:
    """The report of one image, from inside it: the collector under the image's own /usr/bin/python3, as the
    image's build user, in verify's sandbox (no network, read-only root, no capabilities); plus its labels."""
    from fleetbake.pipeline.verify import SANDBOX, TMPFS, build_user

    source = COLLECTOR.read_text()
    client = engine.client()
    try:
        output = client.containers.run(image_id, entrypoint=["/usr/bin/python3", "-I", "-c", source], command=[],
                                       user=build_user(image_id), tmpfs=TMPFS, remove=True, stdout=True, stderr=False,
                                       **SANDBOX)
    except Exception as exc:  # docker.errors.ContainerError, APIError: one line, with the engine's reason
        raise FleetbakeError(f"software report of {image_id[:19]}: the collector failed in the image: "
                             f"{getattr(exc, 'explanation', None) or str(exc).splitlines()[-1]}") from None
    report = json.loads(output)
    report["labels"] = dict(sorted((client.images.get(image_id).labels or {}).items()))
    report["image_id"] = image_id
    return report


@dataclass
class Changes:
    added: dict[str, str] = field(default_factory=dict)
    removed: dict[str, str] = field(default_factory=dict)
    upgraded: dict[str, tuple[str, str]] = field(default_factory=dict)
    downgraded: dict[str, tuple[str, str]] = field(default_factory=dict)
    changed: dict[str, tuple[str, str]] = field(default_factory=dict)  # no known order (rpm): just different

    def __bool__(self) -> bool:
        return any((self.added, self.removed, self.upgraded, self.downgraded, self.changed))


def _compare(manager: str | None, old: str, new: str) -> int | None:
    if manager == "dpkg":
        try:
            return versions.dpkg_compare(old, new)
        except ValueError:
            return None
    return None


def package_changes(old: dict[str, str], new: dict[str, str], manager: str | None) -> Changes:
    result = Changes()
    for name in sorted(set(old) | set(new)):
        if name not in old:
            result.added[name] = new[name]
        elif name not in new:
            result.removed[name] = old[name]
        elif old[name] != new[name]:
            order = _compare(manager, old[name], new[name])
            target = result.changed if order is None or order == 0 else result.upgraded if order < 0 else result.downgraded
            target[name] = (old[name], new[name])
    return result


def is_report(data) -> bool:
    """Whether `data` has the shape `changes` reads: {"packages": {name: version}, "worker": {"packages": ...}}
    (a report read from elsewhere, e.g. a registry, is checked before it is compared)."""
    def table(value) -> bool:
        return isinstance(value, dict) and all(isinstance(k, str) and isinstance(v, str) for k, v in value.items())

    if not isinstance(data, dict) or not table(data.get("packages")):
        return False
    worker = data.get("worker", {})
    return isinstance(worker, dict) and table(worker.get("packages", {})) and isinstance(data.get("manager", ""), str)


def changes(old: dict, new: dict) -> dict[str, Changes]:
    """{"distribution": ..., "worker": ...} between two reports (the worker's venv compared by plain inequality:
    Python versions are PEP 440, and an upgrade there is what pip installed)."""
    manager = new.get("manager") if new.get("manager") == old.get("manager") else None
    worker_old = (old.get("worker") or {}).get("packages") or {}
    worker_new = (new.get("worker") or {}).get("packages") or {}
    return {"distribution": package_changes(old.get("packages") or {}, new.get("packages") or {}, manager),
            "worker": package_changes(worker_old, worker_new, None)}


def _table(header: tuple[str, ...], rows: list[tuple[str, ...]]) -> list[str]:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(cell.replace("|", "\\|") for cell in row) + " |" for row in rows]
    return lines


def markdown(report: dict, image_id: str, row: str) -> str:
    """The software report as Markdown."""
    osr = report.get("os") or {}
    worker = report.get("worker") or {}
    lines = [f"# {row}: software report", "", f"- Image: `{image_id}`",
             f"- OS: {osr.get('PRETTY_NAME', '?')} ({report.get('kernel_arch', '?')})",
             f"- System Python: {report.get('system_python', '?')}",
             f"- Worker: buildbot-worker {worker.get('buildbot-worker') or '?'} on Python {worker.get('python') or '?'}"
             f" in `{worker.get('path') or '?'}`", "", "## Tools", ""]
    lines += _table(("tool", "version"), sorted((name, version) for name, version in (report.get("tools") or {}).items()))
    lines += ["", "## Labels", ""]
    lines += _table(("label", "value"), sorted((report.get("labels") or {}).items()))
    lines += ["", f"## Worker virtualenv packages ({len(worker.get('packages') or {})})", ""]
    lines += _table(("package", "version"), list((worker.get("packages") or {}).items()))
    packages = report.get("packages") or {}
    lines += ["", f"## Distribution packages ({report.get('manager') or '?'}, {len(packages)})", ""]
    lines += _table(("package", "version"), list(packages.items()))
    return "\n".join(lines) + "\n"


def changes_markdown(found: dict[str, Changes], old_image: str, new_image: str, old_ref: str | None = None) -> str:
    """What changed between two images, for a person (and the nightly job summary); old_ref: where the old one is."""
    where = f" ({old_ref})" if old_ref else ""
    lines = [f"Changes from `{old_image[:19]}`{where} to `{new_image[:19]}`:", ""]
    if not any(found.values()):
        return "\n".join([*lines, "No package changed."]) + "\n"
    for scope, result in found.items():
        if not result:
            continue
        rows = [("added", name, "", version) for name, version in result.added.items()]
        rows += [("removed", name, version, "") for name, version in result.removed.items()]
        rows += [(kind, name, a, b) for kind, table in (("upgraded", result.upgraded), ("downgraded", result.downgraded),
                                                          ("changed", result.changed)) for name, (a, b) in table.items()]
        lines += [f"### {scope} packages", ""]
        lines += _table(("change", "package", "before", "after"), rows)
        lines.append("")
    return "\n".join(lines)
