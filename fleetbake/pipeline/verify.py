"""Verify an image the way the fleet uses it: compile CPython in it and run a smoke subset.

Each configuration of a Linux row runs in its own hardened container (testcontainers):
the build user, no capabilities, no-new-privileges, a read-only root with a tmpfs
/tmp, no network, memory and pids limits, and the /buildarea volume. The steps
are the fleet's Unix sequence (configure, make, pythoninfo, tests). With ccache, a named
volume (fleetbake-ccache-<row>) is mounted at /ccache and the image itself decides, as its
entrypoint does for a worker (fleetbake.worker.ccache), what the steps' PATH and CCACHE_DIR
are; the record has ccache's hits and misses for the build. A Windows row runs
the fleet's Windows sequence instead, as the image's ContainerUser without network
(windows_verify). Either way a record (JSON + JUnit XML + log) is written under
build/reports/<image id>/ (fleetbake.record).
"""

from __future__ import annotations

import datetime as dt
import io
import json
import os
import re
import shlex
import shutil
import tarfile
import tempfile
import time
import xml.etree.ElementTree as ET
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Callable

from fleetbake import paths
from fleetbake.errors import UsageError
from fleetbake.worker.fleet import MB_PER_TEST_PROCESS
from fleetbake.pipeline import arches, cpython, engine, families, identity, record, windows_verify
from fleetbake.pipeline.matrix import Configuration, Matrix, RowView
from fleetbake.pipeline.modules import OPTIONAL_MODULES
from fleetbake.worker import ccache as compiler_cache

if TYPE_CHECKING:
    from testcontainers.core.container import DockerContainer

Log = Callable[[str], None]
WORK = "/buildarea/cpython"
SOURCE_MOUNT = "/src"
VERIFY_LABEL = f"{identity.LABEL_PREFIX}.verify"
TEST_TIMEOUT = 1200  # the fleet's default per-test timeout, in seconds
# Resources for the smoke run: everything but what needs the network or hours.
TEST_RESOURCES = "all,-network,-urlfetch,-cpu,-largefile,-decimal,-audio"
MISSING_HEADERS = (
    "The necessary bits to build these optional modules were not found:",
    "Failed to build these modules:",
    "Following modules built successfully but were removed because they could not be imported:",
)


@dataclass
class StepResult:
    name: str
    exit_code: int
    seconds: float


@dataclass
class ConfigResult:
    row: str
    configuration: str
    image_id: str
    passed: bool
    reason: str
    steps: list[StepResult] = field(default_factory=list)
    missing_modules: list[str] = field(default_factory=list)
    missing_ok: dict[str, str] = field(default_factory=dict)  # unbuilt, as the row allows, with its reason
    tests: dict[str, int] = field(default_factory=dict)
    record: Path | None = None
    row_family: str = "debian"
    ccache: bool = False  # the build went through ccache (verify --ccache, and the image turned it on)
    ccache_stats: dict | None = None  # compiler_cache.parse_stats of the build's `ccache --print-stats`
    jobs: dict = field(default_factory=dict)  # the -j of make and of the tests, and why (parallelism)
    platform: dict = field(default_factory=dict)  # platform_facts: the architecture, emulated or not

    def seconds(self, *names: str) -> float:
        return sum(s.seconds for s in self.steps if s.name in names)


def _mib(size: str) -> int:
    """A docker-py memory size ("8g", "512m", bytes) in MiB."""
    match = re.fullmatch(r"([0-9]+)([kmg]?)", size.lower())
    assert match, f"not a memory size: {size}"
    return int(match.group(1)) * {"": 1, "k": 2**10, "m": 2**20, "g": 2**30}[match.group(2)] // 2**20


def smoke_jobs(config: Configuration, jobs: int) -> int:
    """The smoke tests' -j: one test process per CPU (`jobs`), but no more than there are test files, nor more than
    the sandbox's memory holds (fleet.MB_PER_TEST_PROCESS each)."""
    return max(1, min(jobs, len(config.smoke or []) or jobs, _mib(SANDBOX["mem_limit"]) // MB_PER_TEST_PROCESS))


def parallelism(config: Configuration, jobs: int, requested: bool, windows: bool = False) -> dict:
    """What the record says about -j: make's, the tests', and how they were chosen."""
    tests = smoke_jobs(config, jobs)
    chosen = "--jobs" if requested else "the CPU count"
    limits = (f"at most one per CPU (-j{jobs}, {chosen}), per smoke test file ({len(config.smoke or [])}) and per "
              f"{MB_PER_TEST_PROCESS} MiB of the sandbox's {SANDBOX['mem_limit']} memory")
    if windows:
        return {"make": None, "tests": tests, "how": f"build.bat with its own parallelism; tests -j{tests}: {limits}"}
    return {"make": jobs, "tests": tests, "how": f"make -j{jobs} ({chosen}); tests -j{tests}: {limits}"}


def smoke_command(config: Configuration, source: cpython.Source, jobs: int, emulated: bool = False) -> list[str]:
    if config.install:
        python = [f"{WORK}/target/bin/python{source.version_tuple[0]}.{source.version_tuple[1]}", "-Wdefault", "-bb", "-E"]
    else:
        python = ["./python"]
    timeout = int(TEST_TIMEOUT * config.timeout_factor * (EMULATION_SLOWDOWN if emulated else 1))
    ignored = [flag for pattern in EMULATION_GAPS for flag in ("-i", pattern)] if emulated else []
    return [
        "xvfb-run", "--auto-servernum", "--server-args=-screen 0 1024x768x24",
        *python, "-m", "test", "--fail-env-changed", "--slowest", "-W",
        f"-j{smoke_jobs(config, jobs)}", f"-u{TEST_RESOURCES}", f"--timeout={timeout}", *ignored,
        "--junit-xml", f"{WORK}/test-results.xml", *(config.smoke or []),
    ]


def step_env(config: Configuration) -> dict[str, str]:
    """What every step gets; ours last, so that the matrix cannot override them."""
    return {**config.env, "BUILDBOT": "1", "TERM": "xterm"}


# With ccache: the image's own decision (its PATH and CCACHE_DIR for the steps, as one JSON line), the statistics
# zeroed before the build and read after it, all in the container, as the build user.
CCACHE_STEPS = {
    "ccache": [*families.ENTRYPOINT[:2], "-m", "fleetbake.worker.ccache", "env"],
    "ccache-zero": ["ccache", "--zero-stats"],
    "ccache-stats": ["ccache", "--print-stats"],
}


# Emulated code runs about ten times slower than native (QEMU user mode): regrtest's per-test timeout grows
# by as much, so that a test is stopped for hanging, not for running under QEMU.
EMULATION_SLOWDOWN = 10
# Test cases QEMU's user mode fails whatever the image: seen failing in the arm64 image's emulated verify here
# (2026-12-06, Debian 12's qemu-user-static 7.2) and passing in the amd64 image natively. Under emulation alone
# regrtest ignores them (-i), and the record lists each with its reason; natively every one runs.
EMULATION_GAPS = {
    "*SCMRightsStreamTest.testCmsgTrunc*": "qemu-user does not report MSG_CTRUNC when it truncates SCM_RIGHTS "
                                           "control data",
    "test.test_posix.PosixTester.test_fexecve": "qemu-user cannot run a program by its file descriptor (fexecve)",
}


def plan(config: Configuration, source: cpython.Source, jobs: int,
         missing_ok: dict[str, str] | None = None, ccache: bool = False,
         emulated: bool = False) -> list[tuple[str, list[str]]]:
    """The fleet's UnixBuild sequence for one configuration, as (step, argv) pairs, after `platform` (what the
    container's `uname -m` says: the image's architecture, natively or through QEMU).

    `missing_ok`: the row's optional modules that may stay unbuilt; they are not imported. `ccache`: the
    build goes through ccache (the steps `ccache`, `ccache-zero` before configure, `ccache-stats` after make).
    `emulated`: under QEMU, the tests' timeout x EMULATION_SLOWDOWN and EMULATION_GAPS ignored.
    """
    modules = [m for m in OPTIONAL_MODULES if m not in (missing_ok or {})]
    name = source.path.name
    if source.is_tarball:
        unpack = f"mkdir -p {WORK} && tar -xf {SOURCE_MOUNT}/{shlex.quote(name)} -C {WORK} --strip-components=1"
    else:
        unpack = f"mkdir -p {WORK} && cp -a {SOURCE_MOUNT}/{shlex.quote(name)}/. {WORK}/"
    before = [(name, CCACHE_STEPS[name]) for name in ("ccache", "ccache-zero")] if ccache else []
    after = [("ccache-stats", CCACHE_STEPS["ccache-stats"])] if ccache else []
    steps = [
        ("platform", ["uname", "-m"]),
        ("unpack", ["sh", "-c", unpack]),
        *before,
        ("configure", ["./configure", f"--prefix={WORK}/target", *config.configure]),
        ("make", ["make", f"-j{jobs}", "all"]),
        *after,
        ("pythoninfo", ["make", "pythoninfo"]),
        ("modules", ["./python", "-c", "import importlib, sys; [importlib.import_module(m) for m in sys.argv[1:]]", *modules]),
    ]
    if config.install:
        steps += [("install", ["sh", "-c", f"make install && chmod -R a-w {WORK}/target"])]
    steps.append(("tests", smoke_command(config, source, jobs, emulated)))
    return steps


def step_workdir(step: str) -> str:
    """Where a step runs: the source tree, once unpacked."""
    return "/buildarea" if step in ("platform", "unpack") else WORK


def missing_modules(make_output: str) -> list[str]:
    """Modules CPython's build reports as not built, from `make` output."""
    found: list[str] = []
    lines = make_output.splitlines()
    for index, line in enumerate(lines):
        if line.strip() not in MISSING_HEADERS:
            continue
        for follow in lines[index + 1 :]:
            if not follow.strip() or follow.startswith(("To find", "Python build finished", "checking")):
                break
            found += follow.split()
    return list(dict.fromkeys(found))


def junit_summary(xml_bytes: bytes) -> dict[str, int]:
    root = ET.fromstring(xml_bytes)
    counts = {"tests": 0, "failures": 0, "errors": 0, "skipped": 0}
    for case in root.iter("testcase"):
        counts["tests"] += 1
        for kind, key in (("failure", "failures"), ("error", "errors"), ("skipped", "skipped")):
            if case.find(kind) is not None:
                counts[key] += 1
    return counts


def _image(row: RowView, ref: str | None = None) -> tuple[str, str]:
    tag = ref or identity.image_tag(row)
    image = engine.image_id(tag)
    if image is None:
        arch = "" if tag == identity.row_tag(row) else f" --arch {row.arch}"
        raise UsageError(f"image {tag} is not built here: run `invoke build --os {row.name}{arch}` first")
    have = engine.client().api.inspect_image(image).get("Architecture")
    if row.spec.family != "windows" and have != row.arch:
        raise UsageError(f"image {tag} ({image[:19]}) is a {have} image, not {row.arch}: pass --arch {have}")
    return tag, image


def platform_facts(row: RowView) -> dict:
    """The record's `platform`: the image's architecture, and whether this host ran it through QEMU."""
    arch = row.architecture
    emulated = arches.emulated(arch)
    return {"arch": arch.name, "platform": row.platform, "machine": arch.machine, "host": arches.native().name,
            "emulated": emulated, "ignored_under_emulation": dict(EMULATION_GAPS) if emulated else {}}


def build_user(image_id: str) -> str:
    """The image's own build user (its FLEETBAKE_USER): Docker resolves the name in the image's /etc/passwd."""
    user = engine.image_env(image_id).get("FLEETBAKE_USER")
    if not user:
        raise UsageError(f"image {image_id[:19]} names no build user (FLEETBAKE_USER): not a fleetbake worker image")
    return user


# The sandbox every verification runs in; bench runs its baseline under the same limits.
SANDBOX = dict(
    cap_drop=["ALL"],
    security_opt=["no-new-privileges"],
    read_only=True,
    network_mode="none",
    mem_limit="8g",
    pids_limit=4096,
)
TMPFS = {"/tmp": "rw,exec,nosuid,nodev,size=4g"}


VOLUME_NAME = re.compile(r"[a-zA-Z0-9][a-zA-Z0-9_.-]{0,127}")


def ccache_volume(row: RowView, name: str | None = None) -> str:
    """The named volume verify --ccache mounts at /ccache: the row's own (its build uid owns it), or `name`."""
    volume = name or f"fleetbake-ccache-{row.name}"
    if not VOLUME_NAME.fullmatch(volume):
        raise UsageError(f"--ccache-volume {volume!r}: a Docker volume name (letters, digits, '_', '.', '-'), "
                         "never a path: the cache must be a named volume")
    return volume


def verify(
    matrix: Matrix,
    row: RowView,
    configs: list[str],
    cpython_spec: str | None = None,
    jobs: int | None = None,
    log: Log = print,
    image: str | None = None,
    ccache: bool = False,
    ccache_volume_name: str | None = None,
) -> list[ConfigResult]:
    """`ccache` (or a `ccache_volume_name`): the builds go through ccache, on a named volume kept between runs."""
    spec = cpython_spec or row.spec.cpython
    if spec is None:
        raise UsageError(f"{matrix.path}: rows.{row.name}.cpython is not set: pass --cpython DIR|TARBALL|URL|git:REF")
    volume = None
    if ccache or ccache_volume_name:
        if row.spec.family == "windows":
            raise UsageError(f"--ccache: {row.name} is a Windows row; ccache is in the Linux images only")
        volume = ccache_volume(row, ccache_volume_name)
    engine.require_os(row, "verify", "verifies")
    arches.require_runnable(row.architecture, "verify")
    cpython.check_fetchable(spec)
    tag, image_id = _image(row, image)
    source = cpython.resolve(spec, log)
    tree = windows_verify.prepare_tree(source, log) if row.spec.family == "windows" else None
    emulated = f", {row.arch} under QEMU (timeouts x{EMULATION_SLOWDOWN})" if arches.emulated(row.architecture) else ""
    log(f"verify {row.name}: image {tag} ({image_id[:19]}), CPython {source.version} from {source.spec}"
        + (f", ccache on volume {volume}" if volume else "") + emulated)
    requested = jobs is not None
    jobs = jobs or os.cpu_count() or 2
    results = []
    for name in configs:
        results.append(_verify_config(row, name, row.configurations[name], image_id, source, jobs, log, tree,
                                      ccache_volume=volume, jobs_requested=requested))
    return results


def ccache_env(output: str) -> dict:
    """The image's decision (`python3 -I -m fleetbake.worker.ccache env`): its last line, a JSON object."""
    for line in reversed(output.splitlines()):
        if line.startswith("{"):
            try:
                decision = json.loads(line)
            except ValueError:
                break
            if isinstance(decision, dict) and isinstance(decision.get("env"), dict):
                return decision
            break
    return {"enabled": False, "reason": "the image printed no decision (a fleetbake image from before ccache?)", "env": {}}


def _verify_config(
    row: RowView, name: str, config: Configuration, image_id: str, source: cpython.Source, jobs: int, log: Log,
    tree: Path | None = None, ccache_volume: str | None = None, jobs_requested: bool = False,
) -> ConfigResult:
    result = ConfigResult(row.name, name, image_id, passed=False, reason="", row_family=row.spec.family,
                          jobs=parallelism(config, jobs, jobs_requested, row.spec.family == "windows"),
                          platform=platform_facts(row))
    started = dt.datetime.now(dt.timezone.utc)
    if config.requires_python and source.version_tuple < tuple(int(p) for p in config.requires_python.split(".")):
        result.reason = f"needs CPython >= {config.requires_python}, the source is {source.version}"
        log(f"verify {row.name}/{name}: FAIL: {result.reason}")
        return _write_record(result, config, source, started, None)

    windows = row.spec.family == "windows"
    if windows:
        steps = windows_verify.plan(config, TEST_RESOURCES, smoke_jobs(config, jobs))
    else:
        steps = plan(config, source, jobs, row.spec.missing_ok, ccache=ccache_volume is not None,
                     emulated=result.platform["emulated"])
    env = step_env(config)
    log_path = record.log_path(image_id, name)
    log_path.parent.mkdir(parents=True, exist_ok=True)
    partial = log_path.with_name(f".{name}.log.{os.getpid()}")  # a concurrent run never truncates this run's log
    junit = None
    try:
        with partial.open("w", encoding="utf-8") as log_file, _container(row, image_id, source, tree, ccache_volume) as container:
            api = engine.client().api
            cid = container.get_wrapped_container().id
            for index, (step, argv) in enumerate(steps, start=1):
                prefix = f"[{row.name}{' ' + row.arch if arches.emulated(row.architecture) else ''} {name} {index}/{len(steps)} {step}]"
                log(f"{prefix} $ {shlex.join(argv)}")
                log_file.write(f"$ {shlex.join(argv)}\n")
                begun = time.monotonic()
                if windows:
                    workdir = windows_verify.workdir(step)
                else:
                    workdir = step_workdir(step)
                exit_code, output = _exec(api, cid, argv, env, workdir,
                                          lambda line: (log(f"{prefix} {line}"), log_file.write(line + "\n")))
                result.steps.append(StepResult(step, exit_code, round(time.monotonic() - begun, 1)))
                if step == "platform" and exit_code == 0 and output.strip() != row.architecture.machine:
                    result.reason = f"the container runs {output.strip() or 'nothing'}, not {row.architecture.machine}"
                    break
                if step == "ccache" and exit_code == 0:
                    decision = ccache_env(output)
                    if not decision.get("enabled"):
                        result.reason = f"ccache is off in the image: {decision.get('reason', '?')}"
                        break
                    env.update({str(k): str(v) for k, v in decision["env"].items()})
                    result.ccache = True
                if step == "ccache-stats" and exit_code == 0:
                    result.ccache_stats = compiler_cache.parse_stats(output)
                if step == "make":
                    missing = missing_modules(output)
                    result.missing_ok = {m: row.spec.missing_ok[m] for m in missing if m in row.spec.missing_ok}
                    result.missing_modules = [m for m in missing if m not in row.spec.missing_ok]
                if step == "tests":
                    if windows:
                        junit = windows_verify.read_junit(api, cid)
                    else:
                        junit = _copy_out(container, f"{WORK}/test-results.xml")
                    if junit:
                        result.tests = junit_summary(junit)
                if exit_code != 0:
                    result.reason = f"{step} failed (exit {exit_code})"
                    break
                if step == "make" and result.missing_modules:
                    result.reason = f"optional modules not built: {', '.join(result.missing_modules)}"
                    break
            else:
                result.passed = True
                result.reason = "ok"
    finally:
        if partial.exists():
            os.replace(partial, log_path)  # even a run that broke off leaves its log where people look
    status = "PASS" if result.passed else "FAIL"
    log(f"verify {row.name}/{name}: {status}: {result.reason} (log: {log_path})")
    return _write_record(result, config, source, started, junit)


def _containers() -> type[DockerContainer]:
    """testcontainers, told to run no Ryuk (its image is on Docker Hub): here, as a container starts, never at import."""
    from testcontainers.core.config import testcontainers_config
    from testcontainers.core.container import DockerContainer

    testcontainers_config.ryuk_disabled = True  # we remove our containers ourselves (_container.__exit__)
    return DockerContainer


class _container:
    """A hardened, network-less container of the image, removed (with its volume) on exit."""

    def __init__(self, row: RowView, image_id: str, source: cpython.Source, tree: Path | None = None,
                 ccache_volume: str | None = None):
        self.buildarea: Path | None = None
        if row.spec.family == "windows":
            assert tree is not None, "verify prepares the Windows tree first"
            self.container = _containers()(image_id)
            self.container.with_volume_mapping(str(tree), windows_verify.SOURCE, "ro")
            # A host folder ContainerUser may change, in place of the image's C:\buildarea volume.
            paths.build_dir().mkdir(parents=True, exist_ok=True)
            self.buildarea = Path(tempfile.mkdtemp(dir=paths.build_dir(), prefix=".verify-buildarea-"))
            windows_verify.grant(self.buildarea, "M")
            self.container.with_volume_mapping(str(self.buildarea), windows_verify.BUILDAREA, "rw")
            config = engine.client().images.get(image_id).attrs.get("Config") or {}
            self.container.with_kwargs(labels={VERIFY_LABEL: row.name}, **windows_verify.container_settings(config))
            return
        self.container = _containers()(image_id, command=["sleep", "infinity"])
        self.container.with_volume_mapping(str(source.path), f"{SOURCE_MOUNT}/{source.path.name}", "ro")
        for target, options in TMPFS.items():  # with_tmpfs_mount passes its "size" through as the mount options
            self.container.with_tmpfs_mount(target, options)
        if ccache_volume:  # a named volume: Docker creates it from the image's /ccache (owned by the build user)
            self.container.with_volume_mapping(ccache_volume, compiler_cache.CACHE_DIR, "rw")
        self.container.with_kwargs(user=build_user(image_id), labels={VERIFY_LABEL: row.name}, **SANDBOX)

    def __enter__(self) -> DockerContainer:
        self.container.start()
        return self.container

    def __exit__(self, *exc: object) -> None:
        try:
            self.container.stop(force=True, delete_volume=True)
        finally:
            if self.buildarea is not None:
                shutil.rmtree(self.buildarea, ignore_errors=True)


def _exec(api, cid: str, argv: list[str], env: dict[str, str], workdir: str, emit: Callable[[str], object]) -> tuple[int, str]:
    exec_id = api.exec_create(cid, argv, environment=env, workdir=workdir)["Id"]
    pending = b""
    chunks: list[str] = []
    for chunk in api.exec_start(exec_id, stream=True):
        pending += chunk
        *lines, pending = pending.split(b"\n")
        for raw in lines:
            line = raw.decode("utf-8", "replace").rstrip("\r")
            chunks.append(line)
            emit(line)
    if pending:
        line = pending.decode("utf-8", "replace")
        chunks.append(line)
        emit(line)
    return api.exec_inspect(exec_id)["ExitCode"], "\n".join(chunks)


def _copy_out(container: DockerContainer, path: str) -> bytes | None:
    try:
        stream, _ = container.get_wrapped_container().get_archive(path)
    except Exception:  # noqa: BLE001 - absent file: the record says so
        return None
    with tarfile.open(fileobj=io.BytesIO(b"".join(stream))) as archive:
        member = archive.next()
        return archive.extractfile(member).read() if member else None


def _write_record(
    result: ConfigResult,
    config: Configuration,
    source: cpython.Source,
    started: dt.datetime,
    junit: bytes | None,
) -> ConfigResult:
    windows = config.windows if result.row_family == "windows" else None
    result.record = record.write(result.image_id, result.configuration, {
        "row": result.row,
        "configure": [] if windows else config.configure,
        **({"windows": windows.model_dump()} if windows else {}),
        "env": config.env,
        "cpython": source.to_json(),
        "passed": result.passed,
        "reason": result.reason,
        "steps": [vars(step) for step in result.steps],
        "missing_modules": result.missing_modules,
        "missing_ok": result.missing_ok,
        "tests": result.tests,
        "jobs": result.jobs,
        "platform": result.platform,
        "ccache": result.ccache,
        "ccache_stats": result.ccache_stats,
        "started": record.timestamp(started),
        "image": engine.image_facts(result.image_id),
    }, junit)
    return result


def summary_table(results: list[ConfigResult]) -> str:
    rows = [("configuration", "result", "compile", "tests", "detail")]
    for r in results:
        tests = r.tests
        detail = r.reason if not r.passed else f"{tests.get('tests', 0)} tests, {tests.get('skipped', 0)} skipped"
        if r.missing_ok:
            detail += f"; not built, as the row allows: {', '.join(r.missing_ok)}"
        if r.ccache_stats:
            detail += f"; ccache {r.ccache_stats['hits']} hits, {r.ccache_stats['misses']} misses"
        rows.append(
            (
                f"{r.row}/{r.configuration}" + (f" ({r.platform['arch']})" if r.platform.get("emulated") else ""),
                "pass" if r.passed else "FAIL",
                _duration(r.seconds("configure", "make", "build")),
                _duration(r.seconds("tests")),
                detail,
            )
        )
    widths = [max(len(row[i]) for row in rows) for i in range(4)]
    return "\n".join(
        "  ".join(cell.ljust(widths[i]) for i, cell in enumerate(row[:4])) + "  " + row[4] for row in rows
    )


def _duration(seconds: float) -> str:
    return f"{int(seconds) // 60}m{int(seconds) % 60:02d}s"



def verify_rows(matrix: Matrix, rows: list[RowView], config: str, cpython: str | None = None, jobs: int | None = None,
                image: str | None = None, log: Log = print, ccache: bool = False,
                ccache_volume_name: str | None = None) -> bool:
    """`invoke verify`: each row's configurations (a name or 'all'), a summary table per row; True when all passed."""
    passed = True
    for row in rows:
        results = verify(matrix, row, matrix.configurations(row, config), cpython, jobs, log, image, ccache,
                         ccache_volume_name)
        log(summary_table(results))
        passed &= all(result.passed for result in results)
    return passed
