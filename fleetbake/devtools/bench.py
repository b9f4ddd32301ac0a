"""Speed and size against careful hand-written baselines, in alternating pairs on this machine.

(a) cold build: fleetbake's build with no layer cache vs bench/baseline.Dockerfile, also with none
(b) no-op `invoke build` when nothing changed (wall time, Python start-up included)
(c) image size: fleetbake's image vs the baseline's (both from the cold builds of (a))
(d) `invoke verify --config pydebug` vs a raw `docker run` of the same commands under the same limits
(e) the pydebug compile (configure + make) through ccache: warm (the same volume again) vs cold (an
    empty volume), with `invoke verify --ccache-volume`, on the same image

Every ratio comes from `pairs` alternating pairs (fleetbake, baseline, fleetbake, baseline, ...;
for (e) cold, warm, cold, warm, ...): each side's median and min-max, and the ratio of the medians.
A failing `invoke verify`, baseline build or raw run fails the bench, and so does a "cold" compile
that mostly hit the cache or a "warm" one that mostly missed: a figure is never computed from a
failed or mislabelled run. The report goes
to docs/benchmarks.md for a complete run (every part, at least 3 pairs), otherwise to
build/bench/benchmarks.md, so that a quick check never overwrites the published figures.

fleetbake's cold builds are tagged fleetbake-bench/ours:<row>, never fleetbake/worker:<row>:
the images other people and tests use, and their verification records, are left alone.

`--arch` (default: the host's own) measures (a) and (c) for another architecture, both sides built
for its platform under emulation on the row's base for it (base.local_ref); (b), (d) and (e) need a
native run and are skipped with that reason. Those figures go to their own section of the report
(`cold-<arch>`). A native run that measured (a) and (c) with at least 3 pairs is published even when
it skipped (b), (d) or (e): their rows are carried over from the report it replaces, marked as such.
"""

from __future__ import annotations

import datetime as dt
import io
import os
import platform
import re
import shlex
import statistics
import subprocess
import sys
import tarfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from docker.errors import APIError, DockerException, NotFound

from fleetbake import files, paths, proc
from fleetbake.errors import FleetbakeError, UsageError
from fleetbake.pipeline import arches, base, build, cpython, engine, families, identity, record, render, reproducible, verify
from fleetbake.pipeline.matrix import Matrix, RowView

Log = Callable[[str], None]
BASELINE_DOCKERFILE = paths.ROOT / "bench" / "baseline.Dockerfile"
REPORT = paths.ROOT / "docs" / "benchmarks.md"
BENCH_REPO = "fleetbake-bench"
CONFIG = "pydebug"  # the configuration (d) verifies
MIN_PAIRS = 3  # fewer makes a preliminary report, never the published one
SIDES = ("fleetbake", "baseline")
# The targets: on the ratio of medians (fleetbake / baseline), or, for the no-op build, in seconds.
# (a), (c) and the emulated cold build: issue 22's; (e): the warm compile at most half the cold one (issue 12).
TARGETS = {"cold": 0.85, "cold-emulated": 0.85, "noop": 1.0, "size": 0.95, "verify": 1.05, "warm": 0.50}
NATIVE_ONLY = "needs a native run: {arch} is emulated here"  # why (b), (d) and (e) skip another architecture
CCACHE_SIDES = ("cold", "warm")  # (e)'s order: the cold run empties the volume the warm run then reuses
COMPILE_STEPS = ("configure", "make")
COUNTS = ("hits", "misses")  # measurements that are counts, not seconds
# docker-py's container arguments (verify.SANDBOX) as `docker run` flags. A setting missing
# here fails the bench rather than let the raw run drift from verify's sandbox.
RUN_FLAGS = {
    "cap_drop": "--cap-drop",
    "cap_add": "--cap-add",
    "security_opt": "--security-opt",
    "read_only": "--read-only",
    "network_mode": "--network",
    "mem_limit": "--memory",
    "memswap_limit": "--memory-swap",
    "pids_limit": "--pids-limit",
    "shm_size": "--shm-size",
    "ulimits": "--ulimit",
}


class BenchError(FleetbakeError):
    """A run the figures cannot come from: a failed verify, baseline build or raw run."""


# --- the pure parts: statistics, order, verdicts, report ----------------------------------


@dataclass(frozen=True)
class Stats:
    """One side's measurements of one figure."""

    values: tuple[float, ...]

    def __post_init__(self) -> None:
        if not self.values:
            raise ValueError("no measurements")

    @property
    def median(self) -> float:
        return statistics.median(self.values)

    @property
    def low(self) -> float:
        return min(self.values)

    @property
    def high(self) -> float:
        return max(self.values)


def ratio_of_medians(ours: Stats, theirs: Stats) -> float:
    return ours.median / theirs.median


def alternation(pairs: int, order: tuple[str, ...] = SIDES) -> list[tuple[int, str]]:
    """(pair number, side) in the order they run: fleetbake, baseline, fleetbake, baseline, ... (or `order`'s)"""
    if pairs < 1:
        raise UsageError(f"--pairs {pairs}: at least 1 (and {MIN_PAIRS} or more for published figures)")
    return [(n, side) for n in range(1, pairs + 1) for side in order]


def measure_pairs(
    pairs: int, sides: dict[str, Callable[[int], dict[str, float]]], log: Log, what: str, order: tuple[str, ...] = SIDES
) -> dict[str, list[dict[str, float]]]:
    """Run each side `pairs` times, alternating in `order`; each call returns its named measurements."""
    results: dict[str, list[dict[str, float]]] = {side: [] for side in order}
    for n, side in alternation(pairs, order):
        measured = sides[side](n)
        shown = ", ".join(f"{v / 1e6:.0f} MB" if k == "bytes" else f"{v:.0f} {k}" if k in COUNTS else f"{v:.2f} s"
                          for k, v in measured.items())
        log(f"bench {what}: pair {n}/{pairs} {side}: {shown}")
        results[side].append(measured)
    return results


def stats_of(runs: list[dict[str, float]], key: str, scale: float = 1.0) -> Stats:
    return Stats(tuple(run[key] / scale for run in runs))


@dataclass(frozen=True)
class Figure:
    name: str  # "(a) cold build"
    unit: str  # "s" or "MB"
    ours: Stats
    baseline: Stats | None  # None: no baseline, the target is on fleetbake's median, in `unit`
    target: float
    note: str = ""  # more about the runs, after the verdict

    @property
    def measured(self) -> float:
        return ratio_of_medians(self.ours, self.baseline) if self.baseline else self.ours.median

    @property
    def met(self) -> bool:
        return self.measured <= self.target

    def target_text(self) -> str:
        return f"<= {self.target:.2f} x baseline" if self.baseline else f"<= {self.target:g} {self.unit}"

    def verdict(self) -> str:
        unit = "" if self.baseline else f" {self.unit}"
        shown = f"{self.measured:.3f}{unit}"
        if self.met:
            return f"met ({shown} <= {self.target:g}{unit})"
        over = self.measured - self.target
        return f"missed by {over:.3f}{unit}, {over / self.target:.1%} over the target ({shown} > {self.target:g}{unit})"


def _number(value: float, unit: str) -> str:
    if unit == "MB":
        return f"{value:.0f}"
    return f"{value:.2f}" if value < 10 else f"{value:.1f}"


def spread(stats: Stats, unit: str) -> str:
    """`median unit (min–max)`."""
    return f"{_number(stats.median, unit)} {unit} ({_number(stats.low, unit)}–{_number(stats.high, unit)})"


@dataclass(frozen=True)
class Machine:
    cpu: str
    cores: int
    ram_gib: float
    kernel: str
    docker_engine: str
    docker_cli: str
    storage_driver: str

    def describe(self) -> str:
        return (f"{self.cpu}, {self.cores} cores, {self.ram_gib:.1f} GiB RAM, kernel {self.kernel}, "
                f"Docker engine {self.docker_engine} ({self.storage_driver}), docker CLI {self.docker_cli}")


@dataclass(frozen=True)
class Revision:
    commit: str
    changed: tuple[str, ...]  # `git status --porcelain` lines: the tree is dirty when there are any

    def describe(self) -> str:
        if not self.changed:
            return f"`{self.commit}` (clean tree)"
        shown = ", ".join(line[3:] for line in self.changed[:8]) + (", ..." if len(self.changed) > 8 else "")
        return f"`{self.commit}` (dirty tree: {len(self.changed)} changed or untracked files: {shown})"


def command_line(argv: list[str]) -> str:
    """The command as the user typed it, without the virtualenv's path."""
    program = Path(argv[0]).name if argv else "invoke"
    if program in ("__main__.py", "-c"):
        program = "python -m fleetbake.devtools.bench"
    return shlex.join([program, *argv[1:]])


BASELINE_TEXT = {
    "build": (
        "**(a) cold build and (c) image size: `bench/baseline.Dockerfile`**, the Dockerfile a careful "
        "engineer would write by hand for the same job, from the same inputs. It starts `FROM {base}`, the "
        "same locally bootstrapped base fleetbake builds on; runs `apt-get update && apt-get -y upgrade` "
        "(fleetbake's upgrade step), then `apt-get install -y --no-install-recommends` of the row's "
        "{packages} packages, the very list fleetbake renders into `packages.txt` less the distribution's builds of "
        "buildbot-worker's compiled dependencies (its venv takes PyPI's wheels of them), passed as a build "
        "argument, and removes the package lists and the downloaded .deb files in the same layer; trusts the "
        "same {certs} extra CA certificate(s) with `update-ca-certificates`; creates the non-root user "
        "`{user}` (uid {uid}) with `/buildarea` as its home; and installs `buildbot-worker=={worker}` into "
        "its own virtualenv with `pip install --no-cache-dir`. It passes hadolint at fleetbake's own "
        "threshold (`--failure-threshold warning`), with one reasoned exception, DL3008 (pinning every "
        "package would undo the upgrade). Both sides build with the engine's classic builder through the "
        "same docker-py call (no layer cache, no pull) from an in-memory context; fleetbake's side is "
        "`invoke build --force` (render, base check, inputs hash, build, the config written again at the inputs' time) tagged `{ours}` instead of "
        "`fleetbake/worker:{row}`, the baseline is tagged `{theirs}`, and each build first removes its "
        "side's previous image. Size is the engine's image size of each. For another architecture "
        "(`invoke bench --arch`), both sides build for its platform under emulation, and the baseline's `FROM` "
        "image is replaced, in memory, by the row's base for that architecture (`fleetbake/base:{row}-<arch>`, "
        "the one fleetbake builds on): the classic builder would resolve `{base}` to the local image of the "
        "host's own architecture. The file itself is unchanged."
    ),
    "noop": (
        "**(b) no-op build** has no baseline: the wall time of `invoke build --os {row}` (Python start-up "
        "included) when the content tag exists, after one warm-up run; each timed run must report the image "
        "up to date."
    ),
    "verify": (
        "**(d) verify: a raw `docker run`** of the same image (the one `fleetbake/worker:{row}` names when "
        "the bench starts) running `verify.plan`'s commands for `{config}` (unpack, configure, make, "
        "pythoninfo, module imports, the smoke tests under Xvfb) as one `sh -c` chain, under verify's own "
        "sandbox, read from `verify.SANDBOX`, `verify.TMPFS` and `verify.build_user`: the image's "
        "build user by name (`FLEETBAKE_USER`, `{user}`), a read-only root, a tmpfs `/tmp` with the same "
        "options, `--cap-drop ALL`, `no-new-privileges`, `--network none`, the same memory and pids limits, "
        "the same environment, the source mounted read-only, the same `-j`. fleetbake's side is "
        "`invoke verify --os {row} --config {config}` as a user runs it, given the same image ID and "
        "source tarball. Both send their output to a log file."
    ),
    "ccache": (
        "**(e) warm compile: the cold compile** on the same image (the one `fleetbake/worker:{row}` names when "
        "the bench starts), with the same source and `-j`: `invoke verify --os {row} --config {config} "
        "--ccache-volume {volume}` each time, the figure being the record's `configure` + `make` seconds. "
        "Cold removes the volume first, so Docker creates it empty from the image's `/ccache`; warm runs "
        "again on what the cold run left; the pairs alternate cold, warm, cold, warm. A cold run must miss "
        "more often than it hits and a warm run hit more often than it misses (the record's `ccache_stats`), "
        "else the bench fails. The volume is removed at the end."
    ),
}


def _table(figures: list[Figure]) -> list[str]:
    lines = [
        "| figure | fleetbake median (min–max) | baseline median (min–max) | ratio of medians | target | verdict |",
        "|---|---|---|---|---|---|",
    ]
    for f in figures:
        theirs = spread(f.baseline, f.unit) if f.baseline else "–"
        ratio = f"{f.measured:.2f}" if f.baseline else "–"
        lines.append(f"| {f.name} | {spread(f.ours, f.unit)} | {theirs} | {ratio} | {f.target_text()} | "
                     f"{'met' if f.met else 'MISSED'} |")
    return lines


def _targets(figures: list[Figure], skipped: dict[str, str], carried: dict[str, str]) -> list[str]:
    lines = []
    for f in figures:
        why = "" if f.met else " Why: _to be written after the final run._"
        note = f" {f.note}" if f.note else ""
        lines.append(f"- {f.name}: {f.verdict()}.{note}{why}")
    for part, reason in sorted(skipped.items()):
        earlier = " (the table's row is the earlier run's)" if part in carried else ""
        lines.append(f"- {part}: not measured in this run{f' ({reason})' if reason else ''}{earlier}.")
    return lines


EARLIER = " (earlier run)"  # marks a row carried over from the report a partial run replaced


def carried_rows(old: str, parts: list[str]) -> tuple[dict[str, str], str]:
    """The table rows of `parts` in an earlier main report, renamed as the earlier run's, and that run's
    revision line: what a published run that skipped those parts keeps of them."""
    rows = {}
    for line in old.split("\n<!-- section:", 1)[0].splitlines():
        for part in parts:
            if line.startswith(f"| {part}{EARLIER} |") or line.startswith(f"| {part} |"):
                rows[part] = f"| {part}{EARLIER} |" + line.split("|", 2)[2]
    found = re.search(r"^- (Date: .*)\n- (Revision: .*)$", old, re.M)
    return rows, (f"{found.group(1)}, {found.group(2)}" if found else "unknown")


def report(
    figures: list[Figure],
    *,
    row: RowView,
    command: str,
    when: dt.datetime,
    revision: Revision,
    machine: Machine,
    base_id: str,
    pairs: int,
    skipped: dict[str, str],
    certs: int,
    packages: int,
    note: str = "",
    earlier: tuple[dict[str, str], str] = ({}, ""),
) -> str:
    """docs/benchmarks.md's main report (the host's own architecture), or the section of another one.

    `skipped`: part -> why; `earlier`: carried_rows() of the report this one replaces, for parts it skipped.
    """
    emulated = arches.emulated(row.architecture)
    cold_skipped = any(part.startswith(("(a)", "(c)")) for part in skipped)
    preliminary = pairs < MIN_PAIRS or cold_skipped
    carried, carried_from = earlier
    carried = {part: line for part, line in carried.items() if part in skipped}
    platform_text = f"{row.architecture.platform}, under emulation (QEMU through binfmt_misc)" if emulated \
        else f"{row.architecture.platform}, native"
    method = (f"{pairs} alternating pair(s) per ratio (fleetbake, baseline, fleetbake, baseline, ...); "
              "each side is quoted as its median (min–max), each ratio is the ratio of the medians.")
    method += (f" Both sides build for {row.architecture.platform}; the baseline's `FROM` image is replaced, in "
               f"memory, by the {row.arch} base `{base.local_ref(row)}` (the file says `FROM {row.spec.base}`, which "
               f"the classic builder resolves to the local {row.spec.base}, the host's own architecture's base)."
               if emulated else " In (e) the warm compile is the fleetbake column and the cold one the baseline, "
               "each pair cold first.")
    if note:
        method += f" {note.rstrip('.')}."
    title = (f"## {row.arch} under emulation: cold build and size (`invoke bench --arch {row.arch}`)" if emulated
             else "# Benchmarks")
    lines = [
        title,
        "",
        "Written by `invoke bench` (fleetbake/devtools/bench.py): the figures of one run on one machine.",
        "",
        f"- Command: `{command}`",
        f"- Date: {when.strftime('%Y-%m-%d %H:%M UTC')}",
        f"- Revision: {revision.describe()}",
        f"- Machine: {machine.describe()}",
        f"- Platform: {platform_text}",
        f"- Base: `{base.local_ref(row)}`, image `{base_id}`",
        f"- Method: {method}",
        "",
    ]
    if preliminary:
        reasons = ([f"only {pairs} pair(s), fewer than {MIN_PAIRS}"] if pairs < MIN_PAIRS else []) + \
            [f"{part} not measured" for part in sorted(skipped) if part.startswith(("(a)", "(c)"))]
        lines += [f"**Preliminary, not for publication**: {'; '.join(reasons)}.", ""]
    lines += _table(figures)
    if carried:
        shown = sorted(carried)
        lines += [line for part, line in sorted(carried.items())]
        lines += ["", f"Rows marked{EARLIER} were not measured in this run ({', '.join(shown)}): they are the "
                  f"earlier published run's ({carried_from}), kept here unchanged."]
    lines += ["", "#" * (title.count("#") + 1) + " Targets", ""]
    lines += _targets(figures, skipped, carried)
    values = dict(base=base.local_ref(row), packages=packages, certs=certs, user=row.spec.user, uid=row.spec.uid,
                  worker=row.spec.worker_version, row=row.name, config=CONFIG,
                  ours=ours_tag(row), theirs=baseline_tag(row), volume=ccache_volume(row))
    if emulated:  # the main report describes the baselines; (a)'s is the same file, its FROM substituted
        return "\n".join(lines)
    lines += ["", "## Baselines", ""]
    for key in ("build", "noop", "verify", "ccache"):
        lines += [BASELINE_TEXT[key].format(**values), ""]
    return "\n".join(lines)


# --- the baseline's inputs: the row's own data ----------------------------------------------


# Sections a sibling bench writes into the same file (update_bench.py's "updates"): kept when this one rewrites it.
SECTION = re.compile(r"\n<!-- section: ([a-z0-9-]+) -->\n.*?\n<!-- end of section: \1 -->\n", re.S)


def sections_of(path: Path) -> str:
    try:
        return "".join(m.group(0) for m in SECTION.finditer(path.read_text()))
    except FileNotFoundError:
        return ""


def put_section(path: Path, name: str, text: str) -> None:
    """Write (or replace) the section `name` of a benchmarks file, leaving the rest of it as it was."""
    block = f"\n<!-- section: {name} -->\n{text.rstrip()}\n<!-- end of section: {name} -->\n"
    try:
        old = path.read_text()
    except FileNotFoundError:
        old = "# Benchmarks\n"
    found = [m for m in SECTION.finditer(old) if m.group(1) == name]
    new = old[:found[0].start()] + block + old[found[0].end():] if found else old.rstrip("\n") + "\n" + block
    files.write_text(path, new)


def _tag_name(row: RowView) -> str:
    return f"{row.name}-{row.arch}" if arches.emulated(row.architecture) else row.name


def ours_tag(row: RowView) -> str:
    return f"{BENCH_REPO}/ours:{_tag_name(row)}"


def baseline_tag(row: RowView) -> str:
    return f"{BENCH_REPO}/baseline:{_tag_name(row)}"


def bench_dir() -> Path:
    return paths.build_dir() / "bench"


def baseline_packages(matrix: Matrix, row: RowView) -> list[str]:
    """The packages fleetbake installs, read from the packages.txt it renders for the row, less the distribution's
    builds of buildbot-worker's compiled dependencies: the baseline's venv takes PyPI's wheels, as a careful engineer's
    plain `pip install buildbot-worker` does, and would carry those packages unused."""
    text = render.render_row(matrix, row)[render.placed(row, "packages.txt")].content.decode()
    unused = families.WORKER_COMPILED.get(families.family_of(row).name, ())
    return [word for line in text.splitlines() for word in line.split("#", 1)[0].split() if word not in unused]


def baseline_build_args(matrix: Matrix, row: RowView) -> dict[str, str]:
    return {
        "PACKAGES": " ".join(baseline_packages(matrix, row)),
        "BUILDBOT_WORKER_VERSION": row.spec.worker_version,
        "WORKER_USER": row.spec.user,
        "WORKER_UID": str(row.spec.uid),
    }


FROM_LINE = re.compile(rb"^(FROM[ \t]+)(\S+)", re.M | re.I)


def baseline_dockerfile(base_ref: str, text: bytes | None = None) -> bytes:
    """bench/baseline.Dockerfile with its FROM image replaced by `base_ref`, in memory: the classic builder
    resolves `debian:12` to the local image of that name, the host's own architecture's base, so another
    architecture's baseline names its base (base.local_ref) as fleetbake's build does."""
    text = BASELINE_DOCKERFILE.read_bytes() if text is None else text
    if len(FROM_LINE.findall(text)) != 1:
        raise BenchError(f"{BASELINE_DOCKERFILE}: expected one FROM line, to build it on the row's base")
    return FROM_LINE.sub(lambda m: m.group(1) + base_ref.encode(), text)


def baseline_context(certs: list[bytes] | None, base_ref: str) -> bytes:
    """The baseline's build context, as a tar: its Dockerfile (FROM the row's base for its architecture) and the
    extra CA certificates, one a file."""
    files = {"Dockerfile": baseline_dockerfile(base_ref),
             "extra-ca/README.txt": b"Extra CA certificates, the same as fleetbake trusts (invoke bench).\n"}
    for index, cert in enumerate(certs or [], start=1):
        files[f"extra-ca/extra-{index:03d}.crt"] = cert
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as archive:
        for name, content in sorted(files.items()):
            info = tarfile.TarInfo(name)
            info.size, info.mode = len(content), 0o644
            archive.addfile(info, io.BytesIO(content))
    return buffer.getvalue()


# --- (d): the raw run under verify's sandbox --------------------------------------------------


def sandbox_flags(sandbox: dict[str, object], tmpfs: dict[str, str]) -> list[str]:
    """verify's container settings (docker-py arguments) as `docker run` flags."""
    flags: list[str] = []
    for key, value in sandbox.items():
        flag = RUN_FLAGS.get(key)
        if flag is None:
            raise BenchError(f"verify's sandbox sets {key}, which bench cannot pass to docker run: add it to bench.RUN_FLAGS")
        if isinstance(value, bool):
            flags += [flag] if value else []
        elif isinstance(value, (list, tuple)):
            for item in value:
                flags += [flag, str(item)]
        else:
            flags += [flag, str(value)]
    for target, options in tmpfs.items():
        flags += ["--tmpfs", f"{target}:{options}" if options else target]
    return flags


def raw_script(steps: list[tuple[str, list[str]]]) -> str:
    """verify's steps as one shell chain, each in the working directory verify gives it."""
    return " && ".join(
        f"cd {verify.step_workdir(name)} && {shlex.join(argv)}" for name, argv in steps
    )


def raw_run_argv(row: RowView, image_id: str, user: str, source: cpython.Source, jobs: int) -> list[str]:
    config = row.configurations[CONFIG]
    steps = verify.plan(config, source, jobs, row.spec.missing_ok)
    env = [arg for key, value in verify.step_env(config).items() for arg in ("-e", f"{key}={value}")]
    return [
        "docker", "run", "--rm", "--user", user, *sandbox_flags(verify.SANDBOX, verify.TMPFS),
        "-v", f"{source.path}:{verify.SOURCE_MOUNT}/{source.path.name}:ro", *env,
        image_id, "sh", "-c", raw_script(steps),
    ]


# --- running things --------------------------------------------------------------------------


def _run_logged(argv: list[str], log_path: Path, **kwargs: object) -> tuple[int, float, str]:
    """Run a command with its output in a file: (exit code, wall seconds, output).

    Not proc.run: the timed program writes straight into the file, with no reader of ours on the clock,
    and a failure is a figure's verdict (the caller names the log), not a one-line cause.
    """
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with log_path.open("w+", encoding="utf-8", errors="replace") as out:
        out.write(f"$ {shlex.join(argv)}\n")
        out.flush()
        started = time.monotonic()
        code = subprocess.run(argv, stdout=out, stderr=subprocess.STDOUT, check=False, **kwargs).returncode
        seconds = time.monotonic() - started
        out.seek(0)
        return code, seconds, out.read()


def _file_log(path: Path) -> tuple[Log, Callable[[], None]]:
    path.parent.mkdir(parents=True, exist_ok=True)
    handle = path.open("w", encoding="utf-8")
    return (lambda line: handle.write(line + "\n")), handle.close


def _remove_tag(tag: str) -> None:
    """Untag one of the bench's own tags; the engine deletes the image once no tag is left."""
    try:
        engine.client().images.remove(tag)
    except NotFound:
        pass
    except APIError as exc:
        raise BenchError(f"cannot remove the bench image {tag}: {exc.explanation or exc}") from None


def _size(image: str) -> float:
    return float(engine.client().images.get(image).attrs["Size"])


def build_ours(matrix: Matrix, row: RowView, certs: list[bytes] | None, tag: str, log: Log) -> str:
    """`invoke build --force` for the row (build.build_row's steps), tagged `tag` alone."""
    context = render.render_row(matrix, row, certs)
    render.write_context(context, paths.context_dir(row.name))
    origin = identity.row_source(matrix, row)
    base_id = base.ensure_base(row, log=log, epoch=origin.epoch)
    inputs = identity.inputs_hash(render.context_digest(context), base_id, origin)
    built = build._stream_build(row, render.context_tar(context), tag, {}, nocache=True, log=log, epoch=origin.epoch,
                                base=base.local_ref(row))
    return reproducible.recommit(built, base_id, origin.epoch, [tag], identity.labels(row, inputs, base_id, origin))


def build_baseline(context_tar: bytes, tag: str, build_args: dict[str, str], log: Log, platform: str) -> str:
    """`docker build --no-cache` of the baseline, through the same docker-py call as fleetbake's build."""
    step = "before the first step"
    image_id = None
    try:
        stream = engine.client().api.build(
            fileobj=io.BytesIO(context_tar), custom_context=True, tag=tag, buildargs=build_args, decode=True,
            rm=True, forcerm=True, nocache=True, pull=False, platform=platform,
        )
        for entry in stream:
            if "stream" in entry:
                for line in entry["stream"].splitlines():
                    step = line if line.startswith("Step ") else step
                    if line.strip():
                        log(line.rstrip())
            elif "aux" in entry and "ID" in entry["aux"]:
                image_id = entry["aux"]["ID"]
            elif "error" in entry:
                message = (entry.get("errorDetail", {}).get("message") or entry["error"]).strip().splitlines()[-1]
                raise BenchError(f"the baseline build failed at {step!r}: {message}")
    except (APIError, DockerException) as exc:
        raise BenchError(f"the baseline build failed at {step!r}: {getattr(exc, 'explanation', None) or exc}") from None
    image_id = image_id or engine.image_id(tag)
    if image_id is None:
        raise BenchError("the baseline build ended without an image")
    return image_id


def _cold_side(side: str, row: RowView, build_one: Callable[[Log], str], check_base: Callable[[], None]) -> Callable[[int], dict[str, float]]:
    tag = ours_tag(row) if side == "fleetbake" else baseline_tag(row)

    def measure(n: int) -> dict[str, float]:
        _remove_tag(tag)  # each build starts from the same state: the base, and no image of its own
        os.sync()  # the removal's writes land before the clock starts, not during the build
        log_path = bench_dir() / f"cold-{side}-{n}.log"
        file_log, close = _file_log(log_path)
        try:
            started = time.monotonic()
            try:
                build_one(file_log)
            except FleetbakeError as exc:
                raise BenchError(f"{side} cold build {n} failed: {exc} (log: {log_path})") from None
            seconds = time.monotonic() - started
        finally:
            close()
        check_base()
        return {"seconds": seconds, "bytes": _size(tag)}

    return measure


def cold_builds(matrix: Matrix, row: RowView, pairs: int, check_base: Callable[[], None], log: Log) -> list[Figure]:
    certs = render.ca_certs_from(None)
    context_tar = baseline_context(certs, base.local_ref(row))
    args = baseline_build_args(matrix, row)
    platform = row.architecture.platform
    log(f"bench (a)+(c): {pairs} alternating pair(s) of cold builds (no layer cache); logs in {bench_dir()}/")
    sides = {
        "fleetbake": _cold_side("fleetbake", row, lambda lg: build_ours(matrix, row, certs, ours_tag(row), lg), check_base),
        "baseline": _cold_side("baseline", row, lambda lg: build_baseline(context_tar, baseline_tag(row), args, lg, platform),
                               check_base),
    }
    runs = measure_pairs(pairs, sides, log, "(a) cold build")
    cold_target = TARGETS["cold-emulated" if arches.emulated(row.architecture) else "cold"]
    return [
        Figure("(a) cold build", "s", stats_of(runs["fleetbake"], "seconds"), stats_of(runs["baseline"], "seconds"),
               cold_target),
        Figure("(c) image size", "MB", stats_of(runs["fleetbake"], "bytes", 1e6), stats_of(runs["baseline"], "bytes", 1e6),
               TARGETS["size"]),
    ]


def noop_builds(matrix: Matrix, row: RowView, runs: int, log: Log) -> Figure:
    argv = [sys.executable, "-m", "invoke", "build", "--os", row.name, "--matrix", str(matrix.path.resolve())]
    log(f"bench (b): {shlex.join(argv[1:])}, one warm-up and {runs} timed run(s)")
    times = []
    for n in range(runs + 1):
        log_path = bench_dir() / f"noop-{n}.log"
        code, seconds, output = _run_logged(argv, log_path, cwd=paths.ROOT)
        if code != 0:
            raise BenchError(f"invoke build --os {row.name} failed (exit {code}) (log: {log_path})")
        if n == 0:  # the warm-up builds, as `invoke build` does, when the row's content tag does not exist yet
            if "up to date" not in output:
                log(f"bench (b): the warm-up built {identity.image_tag(row)} (its content tag did not exist)")
            continue
        if "up to date" not in output:
            raise BenchError(f"invoke build --os {row.name} was not a no-op on timed run {n} (log: {log_path})")
        times.append(seconds)
        log(f"bench (b): run {n}/{runs}: {seconds:.2f}s")
    return Figure("(b) no-op build", "s", Stats(tuple(times)), None, TARGETS["noop"])


def image_and_source(matrix: Matrix, row: RowView, figure: str, log: Log):
    """The image the row's tag names now, and its CPython source, fetched once before any clock starts."""
    image_id = engine.image_id(identity.image_tag(row))
    if image_id is None:
        raise UsageError(f"image {identity.image_tag(row)} is not built here: run `invoke build --os {row.name}` first")
    if not row.spec.cpython:
        raise UsageError(f"{matrix.path}: rows.{row.name}.cpython is not set: {figure} needs a CPython source")
    return image_id, cpython.resolve(row.spec.cpython, log)


def verify_pairs(matrix: Matrix, row: RowView, pairs: int, log: Log) -> Figure:
    image_id, source = image_and_source(matrix, row, "(d)", log)
    jobs = os.cpu_count() or 2
    user = verify.build_user(image_id)
    ours_argv = [sys.executable, "-m", "invoke", "verify", "--os", row.name, "--matrix", str(matrix.path.resolve()),
                 "--config", CONFIG, "--cpython", str(source.path), "--jobs", str(jobs), "--image", image_id]
    raw_argv = raw_run_argv(row, image_id, user, source, jobs)
    log(f"bench (d): {pairs} alternating pair(s) on {image_id[:19]}: invoke verify --config {CONFIG} vs raw docker run")

    def ours(n: int) -> dict[str, float]:
        log_path = bench_dir() / f"verify-fleetbake-{n}.log"
        code, seconds, _ = _run_logged(ours_argv, log_path, cwd=paths.ROOT)
        if code != 0:
            raise BenchError(f"fleetbake's own verify failed (exit {code}) on pair {n} (log: {log_path})")
        return {"seconds": seconds}

    def raw(n: int) -> dict[str, float]:
        log_path = bench_dir() / f"verify-raw-{n}.log"
        code, seconds, _ = _run_logged(raw_argv, log_path)
        if code != 0:
            raise BenchError(f"the raw docker run failed (exit {code}) on pair {n} (log: {log_path})")
        return {"seconds": seconds}

    runs = measure_pairs(pairs, {"fleetbake": ours, "baseline": raw}, log, "(d) verify")
    return Figure(f"(d) verify {CONFIG}", "s", stats_of(runs["fleetbake"], "seconds"), stats_of(runs["baseline"], "seconds"),
                  TARGETS["verify"])


# --- (e): warm against cold compiles through ccache ---------------------------------------------


def ccache_volume(row: RowView) -> str:
    """(e)'s own volume: the bench never empties the one `invoke verify --ccache` keeps (fleetbake-ccache-<row>)."""
    return f"{BENCH_REPO}-ccache-{row.name}"


def compile_figures(rec: dict | None, side: str, since: str) -> tuple[float, dict]:
    """(configure + make seconds, ccache_stats) of one (e) run's record, checked: it is this run's, it passed,
    it went through ccache, and the cache was as cold or as warm as the side says."""
    if not isinstance(rec, dict) or str(rec.get("started", "")) < since:
        raise BenchError(f"{side}: verify wrote no record for this run")
    if rec.get("passed") is not True:
        raise BenchError(f"{side}: the verification failed: {rec.get('reason', '?')}")
    stats = rec.get("ccache_stats") or {}
    if rec.get("ccache") is not True or "hits" not in stats:
        raise BenchError(f"{side}: the build did not go through ccache (record: ccache {rec.get('ccache')})")
    hits, misses = stats["hits"], stats["misses"]
    if side == "cold" and hits >= misses:
        raise BenchError(f"cold: the cache was not empty ({hits} hits, {misses} misses)")
    if side == "warm" and hits <= misses:
        raise BenchError(f"warm: the cache did not carry over ({hits} hits, {misses} misses)")
    steps = {step.get("name"): step.get("seconds") for step in rec.get("steps") or [] if isinstance(step, dict)}
    if any(not isinstance(steps.get(name), (int, float)) for name in COMPILE_STEPS):
        raise BenchError(f"{side}: the record has no {' and '.join(COMPILE_STEPS)} times")
    return float(sum(steps[name] for name in COMPILE_STEPS)), stats


def ccache_note(runs: dict[str, list[dict[str, float]]]) -> str:
    """The hit counts behind (e)'s figure, medians per side."""
    parts = []
    for side in CCACHE_SIDES:
        hits, misses = (statistics.median(run[key] for run in runs[side]) for key in ("hits", "misses"))
        parts.append(f"{side} {hits:.0f} hits, {misses:.0f} misses")
    return f"ccache (medians): {'; '.join(parts)}."


def _remove_volume(name: str) -> None:
    try:
        engine.client().volumes.get(name).remove(force=True)
    except NotFound:
        pass
    except APIError as exc:
        raise BenchError(f"cannot remove the bench volume {name}: {exc.explanation or exc}") from None


def ccache_pairs(matrix: Matrix, row: RowView, pairs: int, log: Log) -> Figure:
    image_id, source = image_and_source(matrix, row, "(e)", log)
    volume = ccache_volume(row)
    argv = [sys.executable, "-m", "invoke", "verify", "--os", row.name, "--matrix", str(matrix.path.resolve()),
            "--config", CONFIG, "--cpython", str(source.path), "--jobs", str(os.cpu_count() or 2), "--image", image_id,
            "--ccache-volume", volume]
    log(f"bench (e): {pairs} alternating pair(s) on {image_id[:19]}: {CONFIG} compile, cold then warm ccache volume {volume}")

    def side(name: str) -> Callable[[int], dict[str, float]]:
        def measure(n: int) -> dict[str, float]:
            if name == "cold":
                _remove_volume(volume)
            log_path = bench_dir() / f"ccache-{name}-{n}.log"
            since = record.timestamp()
            code, _, _ = _run_logged(argv, log_path, cwd=paths.ROOT)
            if code != 0:
                raise BenchError(f"the {name} ccache verify failed (exit {code}) on pair {n} (log: {log_path})")
            try:
                seconds, stats = compile_figures(record.load(image_id, CONFIG), name, since)
            except BenchError as exc:
                raise BenchError(f"{exc} on pair {n} (log: {log_path})") from None
            return {"seconds": seconds, "hits": stats["hits"], "misses": stats["misses"]}
        return measure

    try:
        runs = measure_pairs(pairs, {name: side(name) for name in CCACHE_SIDES}, log, "(e) ccache", CCACHE_SIDES)
    finally:
        _remove_volume(volume)
    return Figure(f"(e) warm ccache compile {CONFIG}", "s", stats_of(runs["warm"], "seconds"),
                  stats_of(runs["cold"], "seconds"), TARGETS["warm"], note=ccache_note(runs))


# --- the run and its record ------------------------------------------------------------------


def machine() -> Machine:
    cpu = platform.processor() or "unknown CPU"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    ram = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 1024**3
    client = engine.client()
    try:  # the client prints its version even when it cannot reach the engine, and exits 1
        cli = proc.call(["docker", "version", "--format", "{{.Client.Version}}"], timeout=30).output.strip() or "?"
    except proc.ProcError:
        cli = "not installed"
    return Machine(cpu, os.cpu_count() or 0, ram, platform.release(), client.version().get("Version", "?"), cli,
                   client.info().get("Driver", "?"))


def revision() -> Revision:
    def git(*args: str) -> str:
        return proc.run(["git", "--no-optional-locks", "-C", paths.ROOT, *args], timeout=30)

    try:
        return Revision(git("rev-parse", "HEAD").strip(), tuple(git("status", "--porcelain").splitlines()))
    except proc.ProcError:
        return Revision("unknown (not a git checkout)", ())


def run(
    matrix: Matrix,
    row: RowView,
    skip_cold: bool = False,
    log: Log = print,
    *,
    pairs: int = MIN_PAIRS,
    skip_noop: bool = False,
    skip_verify: bool = False,
    skip_ccache: bool = False,
    output: Path | None = None,
    command: str | None = None,
    note: str = "",
) -> str:
    """Measure, write the report, return it. See the module docstring."""
    alternation(pairs)  # validates --pairs before anything runs
    if row.spec.family != "debian":
        raise UsageError(f"bench measures a debian-family row (the baseline is an apt Dockerfile); {row.name} is {row.spec.family}")
    emulated = arches.emulated(row.architecture)
    if emulated:
        arches.require_runnable(row.architecture, "bench")
    command = command or command_line(sys.argv)
    base_ref = base.local_ref(row)
    base_id = engine.image_id(base_ref)
    if base_id is None:
        raise UsageError(f"base {base_ref} is not here: run `invoke base --os {row.name} --arch {row.arch}` first")

    def check_base() -> None:
        if engine.image_id(base_ref) != base_id:
            raise BenchError(f"the base {base_ref} changed during the bench: both sides must build on the same one")

    when = dt.datetime.now(dt.timezone.utc)
    rev, host = revision(), machine()
    row_image = engine.image_id(identity.image_tag(row))
    native_only = NATIVE_ONLY.format(arch=row.arch) if emulated else ""
    figures: list[Figure] = []
    skipped: dict[str, str] = {}
    try:
        if skip_cold:
            skipped.update({"(a) cold build": "--skip-cold", "(c) image size": "--skip-cold"})
        else:
            figures += cold_builds(matrix, row, pairs, check_base, log)
        if skip_noop or emulated:
            skipped["(b) no-op build"] = native_only or "--skip-noop"
        else:
            figures.append(noop_builds(matrix, row, pairs, log))
        if skip_verify or emulated:
            skipped[f"(d) verify {CONFIG}"] = native_only or "--skip-verify"
        else:
            figures.append(verify_pairs(matrix, row, pairs, log))
        if skip_ccache or emulated:
            skipped[f"(e) warm ccache compile {CONFIG}"] = native_only or "--skip-ccache"
        else:
            figures.append(ccache_pairs(matrix, row, pairs, log))
    finally:
        for tag in (ours_tag(row), baseline_tag(row)):
            _remove_tag(tag)
    if engine.image_id(identity.image_tag(row)) != row_image:
        log(f"bench: note: {identity.image_tag(row)} changed during the bench: a plain build, (b)'s warm-up or "
            "another user's (the cold builds never tag it)")
    figures.sort(key=lambda f: f.name)
    # Published: at least MIN_PAIRS pairs of (a) and (c), the figures; parts skipped on the host's own
    # architecture keep the published report's rows, marked as the earlier run's.
    published = pairs >= MIN_PAIRS and not skip_cold
    target = output or (REPORT if published else bench_dir() / (f"benchmarks-{row.arch}.md" if emulated else "benchmarks.md"))
    earlier = ({}, "") if emulated or not target.exists() else \
        carried_rows(target.read_text(), [part for part in skipped if not part.startswith(("(a)", "(c)"))])
    text = report(figures, row=row, command=command, when=when, revision=rev, machine=host, base_id=base_id,
                  pairs=pairs, skipped=skipped, certs=len(render.ca_certs_from(None) or []),
                  packages=len(baseline_packages(matrix, row)), note=note, earlier=earlier)
    if emulated:
        put_section(target, f"cold-{row.arch}", text)
    else:
        files.write_text(target, text + sections_of(target))
    log(text)
    log(f"written to {target}" + ("" if published else " (a partial run: docs/benchmarks.md is left alone)"))
    return text
