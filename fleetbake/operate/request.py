"""`invoke request`: hand a verified worker to the fleet.

Prepares python/buildmaster-config's "Add a new worker" issue (.github/ISSUE_TEMPLATE/new_worker.yml)
from the matrix row, this host and the row's last pydebug verification record: the form's fields as
text, a new-issue URL that fills them in, and the `cpw(...)` entry an admin adds to
master/custom/workers.py (cpw is that file's functools.partial(CPythonWorker, settings)). The form's
fields and the constructor's parameters are pinned, with their commits, in
tests/fixtures/buildmaster-config/; the tests hold this module to them.

No password is ever part of it: the form's "Password status" is a dropdown about how the owner
receives one, and this module reads no password, no WORKERPASS and no password file.

The suggestion for a slow machine
---------------------------------
The fleet gives each test file TEST_TIMEOUT = 1200 s, and a worker's `timeout_factor` multiplies it
(so its entries' comments say: how master.cfg applies it is not pinned, see the fixture). A test file
runs in one process, so what matters is how fast this machine runs the same test code, whatever its
number of cores. The JUnit results of a verification time every test case; summed per test file (one
<testsuite> of regrtest's JUnit file), that time hardly depends on how many files ran at once, as
verify runs one per CPU; it does when something else keeps the machine busy (a verification run beside
another measured 1.98x), so verify on an otherwise idle machine. So:

    ratio = (this record's test time, summed over the test files it shares with the reference)
          / (the reference's test time over those same files)
    timeout_factor = 1 when ratio <= 1.25, else ratio rounded up to the next 0.5

The reference (fleetbake.operate.speed_reference) is the pydebug verification of the debian-12 image
on this project's CI machine (2 cores), the machine the fleet's 1200 s is taken to suit. Its repeated
runs stay within 8% of each other, hence the 25% before a factor above 1; a factor is never below 1.
Compile times (configure, make -jN) are shown beside it, for information: they depend on N.

    parallel_tests = CPUs + 2, the fleet's convention, but at most one test process per 600 MiB of
    memory (a full test run peaked at 3.4 GB with -j6 on an 8 GB fleet worker), and at least 1.
"""

from __future__ import annotations

import json
import math
import platform
import re
import urllib.parse
import xml.etree.ElementTree as ET
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from fleetbake import paths
from fleetbake.errors import FleetbakeError, UsageError
from fleetbake.operate import speed_reference
from fleetbake.pipeline import arches, identity, record
from fleetbake.worker import fleet, preflight

# --- the fleet's form and worker list, as pinned in tests/fixtures/buildmaster-config/ ---

REPOSITORY = "python/buildmaster-config"
TEMPLATE = "new_worker.yml"
NEW_ISSUE = f"https://github.com/{REPOSITORY}/issues/new"
TITLE = "New worker request: {name}"  # the form's title, "New worker request: <owner-worker-suffix>"


@dataclass(frozen=True)
class Field:
    id: str
    label: str
    type: str  # input, textarea or dropdown
    required: bool
    options: tuple[str, ...] = ()


FIELDS = (
    Field("owner-username", "Username", "input", True),
    Field("owner-github", "GitHub username", "input", False),
    Field("owner-name", "Name", "input", False),
    Field("owner-email", "Email address", "input", False),
    Field("owner-password", "Password status", "dropdown", True, (
        "I need a new owner password", "I need a new worker password", "I will use an existing owner password")),
    Field("worker-arch", "Processor architecture", "input", True),
    Field("worker-os", "Operating System", "input", True),
    Field("worker-special", "Anything special about the worker?", "textarea", False),
)
FIELD = {f.id: f for f in FIELDS}
# --password: how the owner gets a password. A choice of the form's dropdown, never a secret.
PASSWORD_CHOICES = dict(zip(("new-owner", "new-worker", "existing"), FIELD["owner-password"].options))
# Prefilling a dropdown through the URL has been seen to make GitHub show a blank issue instead of the form
# (see the fixture): the URL carries the input and textarea fields, the text names the dropdown's choice.
URL_TYPES = ("input", "textarea")

WORKER_LIST = "master/custom/workers.py"
ENTRY_CALLABLE = "cpw"  # workers.py: cpw = partial(CPythonWorker, settings)
TEST_TIMEOUT = 1200  # the fleet's seconds per test file (master/custom/factories.py)

# --- the suggestion's rule ---

TOLERANCE = 1.25  # up to 25% slower than the reference keeps the fleet's timeout
MIN_SHARED_SECONDS = 30.0  # of the reference's test time, for a comparison worth the name
MAX_JUNIT_BYTES = 64 * 1024 * 1024
CONFIGURATION = "pydebug"  # the reference's, and the fleet's default UnixBuild

# --- what the owner types: checked for what it means ---

# workers.py takes the owner from the worker name's text before its first "-".
OWNER = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,38}")
SUFFIX = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_-]*")
# GitHub logins: letters, digits and single hyphens, not at either end, at most 39 characters.
GITHUB_LOGIN = re.compile(r"[A-Za-z0-9](?:[A-Za-z0-9]|-(?=[A-Za-z0-9])){0,38}")
EMAIL_LOCAL = re.compile(r"[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+(?:\.[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+)*")
DOMAIN_LABEL = re.compile(r"[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?")
TLD = re.compile(r"[A-Za-z]{2,63}|xn--[A-Za-z0-9-]{1,59}")


def _shown(value: str) -> str:
    """A bad value, quoted in an error: short and on one line."""
    return repr(value if len(value) <= 60 else value[:57] + "...")


def check_owner(owner: str) -> str:
    if not OWNER.fullmatch(owner or ""):
        raise UsageError(f"--owner: {_shown(owner or '')} is not a fleet owner name: letters, digits and '_', "
                         "not starting with a digit, at most 39, and no '-' (workers.py takes the owner from "
                         "the worker name's text before its first '-')")
    return owner


def worker_name(owner: str, suffix: str) -> str:
    if not SUFFIX.fullmatch(suffix or ""):
        raise UsageError(f"--name: {_shown(suffix or '')} is not a worker name suffix: letters, digits, '_' and '-', "
                         "not starting with '-'")
    name = f"{owner}-{suffix}"
    if not fleet.is_worker_name(name):
        raise UsageError(f"--name: the worker name {name!r} is longer than the 50 characters Buildbot allows")
    return name


def default_suffix(row_name: str, machine: str) -> str:
    """debian-12 on x86_64: debian12-x86_64 (the README's example's shape); dots are not allowed in names."""
    return f"{re.sub(r'[^A-Za-z0-9]', '', row_name)}-{re.sub(r'[^A-Za-z0-9_]', '_', machine or 'unknown')}"


def check_github(login: str) -> str:
    bare = (login or "").removeprefix("@")
    if not GITHUB_LOGIN.fullmatch(bare):
        raise UsageError(f"--github: {_shown(login or '')} is not a GitHub login: letters, digits and single "
                         "hyphens, not at either end, at most 39 characters")
    return bare


def check_email(address: str) -> str:
    local, at, domain = (address or "").rpartition("@")
    labels = domain.split(".")
    if not (at and len(address) <= 254 and len(local) <= 64 and EMAIL_LOCAL.fullmatch(local) and len(labels) >= 2
            and all(DOMAIN_LABEL.fullmatch(label) for label in labels) and TLD.fullmatch(labels[-1])):
        raise UsageError(f"--email: {_shown(address or '')} does not look like an email address (name@domain.tld)")
    return address


def obfuscated(address: str) -> str:
    """The form asks for "user at domain dot tld": the issue is public."""
    local, _, domain = address.rpartition("@")
    return f"{local} at {' dot '.join(domain.split('.'))}"


def check_text(option: str, value: str, limit: int, lines: bool = False) -> str:
    text = (value or "").strip()
    allowed = {"\n"} if lines else set()
    if len(text) > limit or any(not ch.isprintable() and ch not in allowed for ch in text):
        raise UsageError(f"--{option}: at most {limit} printable characters{' (newlines allowed)' if lines else ', one line'}")
    return text


def password_choice(choice: str) -> str:
    """The dropdown's option. The error never repeats what was given: it may be a password."""
    if choice not in PASSWORD_CHOICES:
        raise UsageError("--password takes how you will get a password, never a password: "
                         + ", ".join(f"{key} ({text!r})" for key, text in PASSWORD_CHOICES.items()))
    return PASSWORD_CHOICES[choice]


# --- this host ---


@dataclass(frozen=True)
class Host:
    cpus: int
    memory_mb: int | None  # MiB
    system: str  # "Debian GNU/Linux 12 (bookworm), Linux 6.1.0 x86_64"
    machine: str  # platform.machine()


def this_host() -> Host:
    cpus, kib = preflight.cpu_count(), preflight.memory_kib()
    memory_mb = kib // 1024 if kib is not None else None
    try:
        name = platform.freedesktop_os_release().get("PRETTY_NAME") or platform.system()
    except OSError:
        name = f"{platform.system()} {platform.version()}"
    system = f"{name}, {platform.system()} {platform.release()} {platform.machine()}"
    return Host(cpus, memory_mb, system, platform.machine())


def architecture(machine: str) -> str:
    """The form's "Processor architecture" (its default is amd64): OCI's name, or the machine's own for one
    fleetbake does not build."""
    arch = arches.from_machine(machine)
    return arch.name if arch else machine.lower()


def arch_tags(machine: str) -> list[str]:
    """The fleet's tags for an architecture, as its entries spell them."""
    arch = arches.from_machine(machine)
    return list(arch.fleet_tags) if arch else [machine.lower()]


def distribution(row) -> str:
    """debian:12 -> debian, registry.fedoraproject.org/fedora:44 -> fedora."""
    return row.spec.base.rsplit("/", 1)[-1].split(":", 1)[0].split("@", 1)[0].lower()


def operating_system(row) -> str:
    """The row's OS in words: Debian 12, Ubuntu 24.04, Fedora 44, Windows Server 2022."""
    if row.spec.family == "windows":
        return f"Windows Server {row.name.removeprefix('windows-')}"
    tag = row.spec.base.rsplit("/", 1)[-1].partition(":")[2] or "latest"
    return f"{distribution(row).capitalize()} {tag}"


def tags(row, machine: str) -> list[str]:
    """The entry's tags: the fleet's OS tags, 'docker' (a container worker, as ware-alpine), then the architecture's."""
    if row.spec.family == "windows":
        year = row.name.removeprefix("windows-")
        os_tags = ["windows", f"win-srv-{year[-2:]}"] if year.isdigit() else ["windows"]
    else:
        os_tags = ["linux", "unix", distribution(row)]
    return [*os_tags, "docker", *arch_tags(machine)]


# --- the record and the suggestion ---


def _steps(rec: dict) -> dict[str, float]:
    out: dict[str, float] = {}
    for step in rec.get("steps") or []:
        if isinstance(step, dict) and isinstance(step.get("seconds"), (int, float)):
            out[str(step.get("name"))] = out.get(str(step.get("name")), 0.0) + float(step["seconds"])
    return out


IMAGE_ID = re.compile(r"(?:sha256:)?([0-9a-f]{64})")


def check_image(image: str) -> str:
    match = IMAGE_ID.fullmatch(image or "")
    if not match:
        raise UsageError(f"--image: {_shown(image or '')} is not an image ID (sha256: and 64 hex digits, as in build/reports/)")
    return f"sha256:{match.group(1)}"


def last_record(row_name: str, image: str | None = None) -> tuple[dict, Path]:
    """The row's last pydebug record (or that of --image, checked by check_image): it must have passed."""
    if image:
        found = [(record.load(image, CONFIGURATION), record.report_dir(image) / f"{CONFIGURATION}.json")]
        found = [(rec, path) for rec, path in found if rec is not None and rec.get("image_id") == image]
    else:
        found = []
        top = paths.reports_dir()
        for path in sorted(top.glob(f"*/{CONFIGURATION}.json")) if top.is_dir() else []:
            try:
                rec = json.loads(path.read_text(encoding="utf-8"))
            except (OSError, ValueError):
                continue
            # A record counts for the image it names, in that image's folder only.
            if (isinstance(rec, dict) and rec.get("row") == row_name and isinstance(rec.get("image_id"), str)
                    and record.report_dir(rec["image_id"]) == path.parent):
                found.append((rec, path))
    found = [(rec, path) for rec, path in found if rec.get("row") == row_name]
    where = f"image {image}" if image else f"{paths.reports_dir()}"
    if not found:
        raise FleetbakeError(f"no {CONFIGURATION} verification record of {row_name} in {where}: run "
                             f"`invoke verify --os {row_name} --config {CONFIGURATION}` first (no suggestion from nothing)")
    rec, path = max(found, key=lambda pair: str(pair[0].get("finished", "")))
    if rec.get("passed") is not True:
        raise FleetbakeError(f"the last {CONFIGURATION} verification of {row_name} ({path}, {rec.get('finished', '?')}) "
                             f"failed: {rec.get('reason') or 'no reason recorded'}; fix it and verify again")
    return rec, path


def seconds_per_test_file(junit: bytes) -> dict[str, float]:
    """regrtest's JUnit file: each <testsuite> is one test file; its seconds are its test cases' own."""
    try:
        root = ET.fromstring(junit)
    except ET.ParseError as exc:
        raise FleetbakeError(f"the record's JUnit file does not parse: {exc}") from None
    suites = list(root.iter("testsuite")) or [root]
    seconds: Counter[str] = Counter()
    for suite in suites:
        names: Counter[str] = Counter()
        total = 0.0
        for case in suite.iter("testcase"):
            parts = (case.get("name") or "").split(".")
            if len(parts) > 1 and parts[0] == "test":
                names[parts[1]] += 1
            try:
                total += max(0.0, float(case.get("time") or 0))
            except ValueError:
                continue
        if names:
            seconds[names.most_common(1)[0][0]] += total
    return dict(seconds)


@dataclass
class Suggestion:
    parallel_tests: int
    timeout_factor: float
    ratio: float
    shared_files: list[str]
    shared_reference_seconds: float
    shared_seconds: float
    cpus: int
    memory_mb: int | None
    notes: list[str] = field(default_factory=list)


def round_up_half(value: float) -> float:
    return math.ceil(round(value, 6) * 2) / 2


def suggest_timeout_factor(files: dict[str, float], reference: dict[str, float] | None = None) -> tuple[float, float, list[str], float, float]:
    """(timeout_factor, ratio, shared files, their reference seconds, their seconds here)."""
    reference = speed_reference.TEST_FILE_SECONDS if reference is None else reference
    shared = sorted(set(files) & set(reference))
    ref_seconds = sum(reference[name] for name in shared)
    here = sum(files[name] for name in shared)
    if ref_seconds < MIN_SHARED_SECONDS:
        raise FleetbakeError(f"the record's tests share {ref_seconds:.0f} s of the reference's test time (at least "
                             f"{MIN_SHARED_SECONDS:.0f} s needed, of the {len(reference)} test files of matrix.yml's "
                             "smoke list): no suggestion from so little")
    ratio = here / ref_seconds
    factor = 1.0 if ratio <= TOLERANCE else max(1.0, round_up_half(ratio))
    return factor, ratio, shared, ref_seconds, here


def suggest_parallel_tests(cpus: int, memory_mb: int | None) -> int:
    jobs = cpus + 2
    if memory_mb is not None:
        jobs = min(jobs, memory_mb // fleet.MB_PER_TEST_PROCESS)
    return max(1, jobs)


def suggest(rec: dict, junit: bytes, cpus: int, memory_mb: int | None) -> Suggestion:
    factor, ratio, shared, ref_seconds, here = suggest_timeout_factor(seconds_per_test_file(junit))
    result = Suggestion(suggest_parallel_tests(cpus, memory_mb), factor, ratio, shared, ref_seconds, here, cpus, memory_mb)
    ref = speed_reference.REFERENCE
    version = (rec.get("cpython") or {}).get("version")
    if version != ref["cpython"]:
        result.notes.append(f"this record ran CPython {version}, the reference {ref['cpython']}: the comparison is rougher")
    return result


def read_junit(rec: dict, path: Path) -> bytes:
    name = rec.get("junit")
    junit = path.parent / name if isinstance(name, str) and "/" not in name and name.endswith(".junit.xml") else None
    if junit is None or not junit.is_file():
        raise FleetbakeError(f"{path}: the record has no JUnit results to time its tests by: verify again")
    if junit.stat().st_size > MAX_JUNIT_BYTES:
        raise FleetbakeError(f"{junit}: larger than {MAX_JUNIT_BYTES // 2**20} MiB, not a smoke run's results")
    return junit.read_bytes()


# --- the request ---


@dataclass
class Request:
    title: str
    values: dict[str, str]  # field id -> value ("" when left blank)
    entry: str
    suggestion: Suggestion
    record_path: Path
    explanation: list[str]

    def url(self) -> str:
        query = [("template", TEMPLATE), ("title", self.title)]
        query += [(f.id, self.values[f.id]) for f in FIELDS if f.type in URL_TYPES and self.values.get(f.id)]
        return f"{NEW_ISSUE}?{urllib.parse.urlencode(query, quote_via=urllib.parse.quote)}"

    def text(self) -> str:
        lines = [f"The fleet's \"Add a new worker\" issue ({REPOSITORY}, {TEMPLATE}):", "", f"Title: {self.title}"]
        for f in FIELDS:
            value = self.values.get(f.id, "")
            if f.type == "textarea":
                lines += [f"{f.label}", *(f"    {line}" for line in value.splitlines())]
            else:
                lines.append(f"{f.label}: {value or '(left blank)'}")
        dropdowns = ", ".join(f"{f.label}: {self.values[f.id]!r}" for f in FIELDS if f.type not in URL_TYPES)
        lines += ["", f"Open it prefilled (choose {dropdowns} on the form: GitHub does not reliably prefill a dropdown):",
                  self.url(), "", f"The entry the admins add to {WORKER_LIST} ({ENTRY_CALLABLE} = partial(CPythonWorker, settings)):",
                  self.entry, "", *self.explanation]
        return "\n".join(lines)


def entry(name: str, tag_list: list[str], parallel_tests: int, timeout_factor: float, ratio: float | None = None) -> str:
    """workers.py's style: cpw(name=..., tags=[...], parallel_tests=N[, timeout_factor=F]); the default 1 is left out."""
    lines = [f"{ENTRY_CALLABLE}(", f"    name={json.dumps(name)},", f"    tags={tag_list!r},",
             f"    parallel_tests={parallel_tests},"]
    if timeout_factor != 1:
        factor = int(timeout_factor) if float(timeout_factor).is_integer() else timeout_factor
        why = f": its tests ran {ratio:.2f}x fleetbake's reference time" if ratio else ""
        lines.append(f"    timeout_factor={factor},  # Increase the timeout on this slow worker{why}")
    return "\n".join([*lines, "),"])


def _duration(seconds: float) -> str:
    return f"{seconds:.1f} s"


def build(row, owner: str, *, github: str = "", email: str = "", full_name: str = "", suffix: str = "",
          password: str = "new-owner", image: str | None = None, cpus: int | None = None,
          memory_gb: float | None = None, note: str = "", host: Host | None = None) -> Request:
    """Everything `invoke request` prints, from checked inputs, the row's last record and this host."""
    owner = check_owner(owner)
    host = host or this_host()
    name = worker_name(owner, suffix or default_suffix(row.name, host.machine))
    login = check_github(github) if github else ""
    address = check_email(email) if email else ""
    full_name = check_text("full-name", full_name, 100)
    note = check_text("note", note, 1000, lines=True)
    choice = password_choice(password)
    image = check_image(image) if image else None
    if cpus is not None and (not isinstance(cpus, int) or cpus < 1):
        raise UsageError("--cpus: a whole number of CPUs, at least 1")
    if memory_gb is not None and not (isinstance(memory_gb, (int, float)) and 0 < memory_gb < 1 << 20):
        raise UsageError("--memory-gb: the worker's memory in GiB (e.g. docker run --memory), more than 0")
    cpus = cpus or host.cpus
    memory_mb = int(memory_gb * 1024) if memory_gb is not None else host.memory_mb

    rec, path = last_record(row.name, image)
    s = suggest(rec, read_junit(rec, path), cpus, memory_mb)
    steps = _steps(rec)
    ref = speed_reference.REFERENCE
    compile_here = steps.get("configure", 0) + steps.get("make", 0) + steps.get("build", 0)
    ref_compile = ref["steps"]["configure"] + ref["steps"]["make"]
    image_id = str(rec.get("image_id", ""))
    cpython = rec.get("cpython") or {}
    other = [p.stem for p in sorted(path.parent.glob("*.json")) if p.stem != CONFIGURATION
             and (record.load(image_id, p.stem) or {}).get("passed") is True]
    memory = f"{s.memory_mb / 1024:.1f} GiB RAM" if s.memory_mb else "unknown memory"
    stats = rec.get("ccache_stats") or {}
    # A compile through ccache (verify --ccache) is no measure of this machine: say so wherever its time shows.
    cached = (f" through ccache ({stats.get('hits', '?')} hits, {stats.get('misses', '?')} misses)"
              if rec.get("ccache") is True else "")
    special = [
        f"A fleetbake container worker: image {identity.image_tag(row)} ({image_id[:19]}), buildbot-worker "
        f"{row.spec.worker_version}, connecting to {fleet.DEFAULT_ADDRESS}.",
        f"Verified here: {CONFIGURATION} passed on {rec.get('finished', '?')} with CPython {cpython.get('version', '?')}: "
        f"compile {_duration(compile_here)}{cached}, smoke tests {_duration(steps.get('tests', 0))} "
        f"({(rec.get('tests') or {}).get('tests', '?')} tests)"
        + (f"; also verified: {', '.join(other)}." if other else "."),
        f"Host: {s.cpus} CPUs, {memory}, {host.system}.",
        f"Suggested: parallel_tests={s.parallel_tests}, timeout_factor={s.timeout_factor:g} "
        f"(its tests ran {s.ratio:.2f}x the time of fleetbake's reference machine).",
    ]
    if note:
        special += ["", note]
    values = {
        "owner-username": owner,
        "owner-github": f"@{login}" if login else "",
        "owner-name": full_name,
        "owner-email": obfuscated(address) if address else "",
        "owner-password": choice,
        "worker-arch": architecture(host.machine),
        "worker-os": f"{operating_system(row)} (container {identity.image_tag(row)}) on {host.system}",
        "worker-special": "\n".join(special),
    }
    explanation = [
        "How the suggestion was made (fleetbake/operate/request.py):",
        f"  record: {path}",
        f"  timeout_factor {s.timeout_factor:g}: the test files this record shares with the reference "
        f"({len(s.shared_files)} of {len(speed_reference.TEST_FILE_SECONDS)}) took {_duration(s.shared_seconds)} "
        f"of test time here and {_duration(s.shared_reference_seconds)} on the reference: {s.ratio:.2f}x. "
        f"Up to {TOLERANCE:g}x keeps the fleet's {TEST_TIMEOUT} s per test file (factor 1); above, the ratio "
        "rounded up to the next 0.5.",
        f"  reference: {ref['machine']}; {ref['image']} {CONFIGURATION} on {ref['finished']} "
        f"(CPython {ref['cpython']}): configure {_duration(ref['steps']['configure'])}, make -j{ref['jobs']} "
        f"{_duration(ref['steps']['make'])}, smoke tests -j{ref['jobs']} {_duration(ref['steps']['tests'])}, "
        f"{_duration(sum(speed_reference.TEST_FILE_SECONDS.values()))} of test time.",
        f"  compile here (configure + make, for information): {_duration(compile_here)}{cached}; on the reference "
        f"{_duration(ref_compile)}.",
        f"  parallel_tests {s.parallel_tests}: {s.cpus} CPUs + 2 (the fleet's convention), at most one test "
        f"process per {fleet.MB_PER_TEST_PROCESS} MiB of {memory}.",
        *(f"  note: {n}" for n in s.notes),
    ]
    return Request(TITLE.format(name=name), values,
                   entry(name, tags(row, host.machine), s.parallel_tests, s.timeout_factor, s.ratio), s, path, explanation)
