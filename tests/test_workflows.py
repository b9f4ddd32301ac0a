"""Every claim of the nightly and CI workflows, walked.

For each job of the nightly (one per Linux row and architecture, each Linux row's publish job, each Windows row's
job: the matrices the workflow's own jq program makes of `invoke matrix --json`, run here with the real jq) and
each CI job (following .ci/run and scripts/setup.sh), each `invoke` command is run here through invoke itself, as on
that job's runner: a Docker engine of the runner's OS (Linux on ubuntu-*, Windows on windows-*), the runner's own
machine (aarch64 on ubuntu-24.04-arm, x86_64 elsewhere), binfmt_misc handlers only for what the job's
docker/setup-qemu-action step registered, and apt-get only on ubuntu. The engine is simulated up to the first thing
it is asked to really do: a command that gets there has passed every refusal fleetbake makes by design ("cannot
build here", "cannot build arm64 here", "cannot verify here", a row without a CPython source...); one that ends
before it would fail on every night.
"""

import json
import re
import shlex
import subprocess
from dataclasses import dataclass
from pathlib import Path

import pytest
import yaml
from invoke import Collection, Program

import tasks
from conftest import ROOT
from fleetbake.pipeline import arches, cpython, engine

WORKFLOWS = ROOT / ".github" / "workflows"
# Tasks whose outcome depends on the runner: the ones that talk to the engine or fetch sources.
ENGINE_TASKS = {"base", "build", "verify", "report", "publish", "packer"}
INVOKE = re.compile(r"(?:^|[\s(|;&])(?:[\w./-]*/)?invoke\s+([a-z][a-z-]*)([^|;&)>\n]*)")
SCRIPT = re.compile(r"(?:^|[\s;&])((?:\.ci|scripts)/[\w.-]+)")
EXPRESSION = re.compile(r"\$\{\{\s*(.*?)\s*\}\}")
QEMU_ACTION = "docker/setup-qemu-action@"
DEBIAN_BINFMT = re.compile(r"^\s*(\$sudo |sudo )?update-binfmts --enable", re.MULTILINE)
_binfmt_problem = arches.binfmt_problem  # the real check, pointed at each simulated runner's binfmt_misc


class Reached(Exception):
    """The command asked the engine for real work: every by-design refusal is behind it."""


class SimulatedEngine:
    def __init__(self, containers_os: str):
        self.containers_os = containers_os

    def version(self):
        return {"Os": self.containers_os}

    def __getattr__(self, name):
        raise Reached(name)


@dataclass
class Outcome:
    job: str
    runner: str
    command: str
    reached: bool
    error: str

    def option(self, name: str) -> str | None:
        argv = shlex.split(self.command)
        return argv[argv.index(name) + 1] if name in argv else None


def runner_os(label: str) -> str:
    for prefix, system in (("ubuntu-", "linux"), ("windows-", "windows")):
        if label.startswith(prefix):
            return system
    raise AssertionError(f"unknown runner label {label!r}: say which OS it runs")


def runner_machine(label: str) -> str:
    """platform.machine() on a GitHub-hosted runner: its -arm labels are aarch64 machines; Windows says AMD64."""
    if label.startswith("windows-"):
        return "AMD64"
    return "aarch64" if label.endswith("-arm") else "x86_64"


def scripts_text(text: str, seen: frozenset = frozenset()) -> str:
    """A step's run text, comment lines left out, each repository script it runs following the line that runs it."""
    parts = []
    for line in text.splitlines():
        if line.lstrip().startswith("#"):
            continue
        parts.append(line)
        for script in SCRIPT.findall(line):
            if script not in seen and (ROOT / script).is_file():
                parts.append(scripts_text((ROOT / script).read_text(), seen | {script}))
    return "\n".join(parts)


def commands(text: str) -> list[str]:
    """`invoke ...` command lines in a step's run text and the repository scripts it runs."""
    return [f"invoke {task}{rest}".strip() for task, rest in INVOKE.findall(scripts_text(text))]


def step_shell(workflow: dict, job: dict, step: dict, system: str) -> str:
    """GitHub's choice: the step's shell, else the job's or workflow's default, else pwsh on Windows, bash elsewhere."""
    for holder in (step, (job.get("defaults") or {}).get("run") or {}, (workflow.get("defaults") or {}).get("run") or {}):
        if holder.get("shell"):
            return holder["shell"]
    return "pwsh" if system == "windows" else "bash"


def evaluate(expression: str, key: str | None, entry: dict | None, system: str):
    """The expressions the walk can decide: a matrix entry's field, join() of one, runner.os == '...'. None: one it
    cannot (github.ref, steps.*, ...)."""
    expression = expression.strip()
    if found := re.fullmatch(r"matrix\.(\w+)\.(\w+)", expression):
        return entry[found.group(2)] if entry is not None and found.group(1) == key else None
    if found := re.fullmatch(r"join\(matrix\.(\w+)\.(\w+),\s*'([^']*)'\)", expression):
        return found.group(3).join(entry[found.group(2)]) if entry is not None and found.group(1) == key else None
    if found := re.fullmatch(r"runner\.os\s*==\s*'(\w+)'", expression):
        return found.group(1).lower() == system
    return None


def substitute(text, key: str | None, entry: dict | None, system: str = "linux"):
    """`text` with each ${{ }} the walk can decide replaced by its value."""
    if not isinstance(text, str):
        return text

    def value(match):
        found = evaluate(match.group(1), key, entry, system)
        return match.group(0) if found is None else str(found).lower() if isinstance(found, bool) else str(found)

    return EXPRESSION.sub(value, text)


def runs_on(step: dict, system: str, key: str | None = None, entry: dict | None = None) -> bool:
    """A step's `if:` as far as the runner and the matrix entry decide it; the others (github.ref, ...) count as
    true."""
    condition = str(step.get("if", "")).strip()
    if not condition:
        return True
    found = evaluate(EXPRESSION.sub(lambda m: m.group(1), condition), key, entry, system)
    return True if found is None else bool(found)


def expand(command: str, shell: str, env: dict[str, str], row_configs: dict[str, list[str]]) -> list[list[str]]:
    """argv lists for one command as the step's shell would give them: $VAR from the job's env under bash (under
    pwsh only $env:VAR is the environment; $VAR is an unset PowerShell variable), a loop's "$config" as each."""
    if shell in ("pwsh", "powershell"):
        command = re.sub(r"\$env:(\w+)", lambda m: env.get(m.group(1), ""), command)
        command = re.sub(r"\$\{?\w+(,,)?\}?", "", command)
    else:
        for name, value in env.items():
            command = command.replace(f"${{{name}}}", value).replace(f"${name}", value)
        command = re.sub(r"\$\{(\w+),,\}", lambda m: env.get(m.group(1), m.group(1)).lower(), command)
    argv = shlex.split(command)
    if "$config" not in command:
        return [argv]
    row = argv[argv.index("--os") + 1]
    return [[arg.replace("$config", config) for arg in argv] for config in row_configs[row]]


@dataclass
class Runner:
    """What one job's runner is, as far as fleetbake asks: its engine's OS, its machine, its binfmt_misc."""
    system: str
    machine: str
    binfmt: Path
    keyring: bool

    def register(self, platforms: str) -> None:
        """What docker/setup-qemu-action does (tonistiigi/binfmt): a handler per platform, flags C and F."""
        for name in (p.strip().rpartition("/")[2] for p in platforms.split(",") if p.strip()):
            qemu = arches.get(name).qemu
            (self.binfmt / f"qemu-{qemu}").write_text(f"enabled\ninterpreter /usr/bin/qemu-{qemu}\nflags: OCF\n")


def run(argv: list[str], runner: Runner, matrix: Path, monkeypatch, capsys, tmp_path) -> tuple[bool, str]:
    """Run one command as invoke would on `runner`; (reached the engine's work, error line)."""
    monkeypatch.setattr(engine, "client", lambda: SimulatedEngine(runner.system))
    has_apt = runner.system == "linux"
    monkeypatch.setattr(cpython.shutil, "which", lambda name, *a, **k: f"/usr/bin/{name}" if has_apt else None)
    monkeypatch.setattr(cpython, "DEBIAN_KEYRING", Path("/usr/share/keyrings/debian-archive-keyring.gpg")
                        if runner.keyring else tmp_path / "no-keyring.gpg")
    monkeypatch.setattr(arches.platform, "machine", lambda: runner.machine)
    monkeypatch.setattr(arches, "binfmt_problem", lambda arch, root=runner.binfmt: _binfmt_problem(arch, root))
    program = Program(namespace=Collection.from_module(tasks), name="invoke")
    capsys.readouterr()
    try:
        program.run([*argv, "--matrix", str(matrix)], exit=False)
    except Reached:
        return True, ""
    except SystemExit:  # a parse error: the workflow's command line itself is wrong
        pass
    err = capsys.readouterr().err.strip().splitlines()
    return False, err[-1] if err else "(ended without asking the engine for anything)"


def jq_program(run_text: str) -> str:
    return re.search(r"jq -r '([^']+)'", run_text).group(1)


def jq(program: str, document) -> str:
    return subprocess.run(["jq", "-r", program], input=json.dumps(document), capture_output=True, text=True,
                          check=True).stdout


def matrix_outputs(workflow: dict, rows: list[dict]) -> dict[str, list]:
    """What the workflow's matrix job writes to $GITHUB_OUTPUT from `invoke matrix --json`: its jq, run here."""
    reader = workflow["jobs"].get("matrix")
    if reader is None:
        return {}
    step = next(step for step in reader["steps"] if "invoke matrix --json" in step.get("run", ""))
    lines = jq(jq_program(step["run"]), rows).splitlines()
    return {name: json.loads(value) for name, _, value in (line.partition("=") for line in lines)}


def entries(job: dict, outputs: dict[str, list]) -> tuple[str | None, list]:
    """The job's matrix key and its entries (from the matrix job's outputs), or (None, [None]) without a matrix."""
    for key, value in ((job.get("strategy") or {}).get("matrix") or {}).items():
        found = re.fullmatch(r"\$\{\{\s*fromJSON\(needs\.matrix\.outputs\.(\w+)\)\s*\}\}", str(value))
        if found:
            return key, outputs[found.group(1)]
    return None, [None]


def walk(matrix: Path, workflows: dict[str, dict], monkeypatch, capsys, tmp_path) -> list[Outcome]:
    monkeypatch.setenv("FLEETBAKE_BUILD_DIR", str(tmp_path / "build"))
    monkeypatch.setenv("FLEETBAKE_CACHE", str(tmp_path / "cache"))  # nothing cached: each source is fetched
    monkeypatch.chdir(ROOT)
    from fleetbake.pipeline import matrix as matrix_mod

    rows = json.loads(matrix_mod.load(matrix).to_json())
    row_configs = {r["os"]: r["configurations"] for r in rows}
    outcomes = []
    for workflow_name, workflow in workflows.items():
        outputs = matrix_outputs(workflow, rows)
        for job_name, job in workflow["jobs"].items():
            key, found = entries(job, outputs)
            for number, entry in enumerate(found):
                label = substitute(job["runs-on"], key, entry)
                system = runner_os(label)
                binfmt = tmp_path / "binfmt" / workflow_name / job_name / str(number)
                binfmt.mkdir(parents=True)
                if system == "linux":
                    (binfmt / "status").write_text("enabled\n")  # mounted by systemd on GitHub's Ubuntu runners
                env = {k: substitute(str(v), key, entry, system) for k, v in (job.get("env") or {}).items()}
                steps = [step for step in job["steps"] if runs_on(step, system, key, entry)]
                # Ubuntu runners trust Ubuntu's keys only: Debian's keyring is there if the job installs it.
                keyring = system == "linux" and any("debian-archive-keyring" in scripts_text(step.get("run", ""))
                                                    for step in steps)
                runner = Runner(system, runner_machine(label), binfmt, keyring)
                for step in steps:
                    if step.get("uses", "").startswith(QEMU_ACTION):
                        runner.register(substitute((step.get("with") or {}).get("platforms", "all"), key, entry))
                    if "run" not in step:
                        continue
                    if system == "linux" and DEBIAN_BINFMT.search(scripts_text(step["run"])):
                        # scripts/setup.sh: Debian's qemu-user-static registers a handler (flag F) for each other arch.
                        runner.register(",".join(a.name for a in arches.ARCHES.values() if a.machine != runner.machine))
                    shell = step_shell(workflow, job, step, system)
                    for command in commands(step["run"]):
                        if command.split()[1] not in ENGINE_TASKS:
                            continue
                        for argv in expand(command, shell, env, row_configs):
                            reached, error = run(argv, runner, matrix, monkeypatch, capsys, tmp_path)
                            outcomes.append(Outcome(f"{workflow_name}/{job_name}", label, shlex.join(argv), reached, error))
    return outcomes


def load_workflows(**replace) -> dict[str, dict]:
    return {name: yaml.safe_load(replace.get(name, (WORKFLOWS / f"{name}.yml").read_text())) for name in ("nightly", "ci")}


def problems(outcomes: list[Outcome]) -> list[str]:
    return [f"{o.job} on {o.runner}: {o.command}: {o.error}" for o in outcomes if not o.reached]


def tasks_matrix_json() -> str:
    from fleetbake.pipeline import matrix as matrix_mod

    return matrix_mod.load(ROOT / "matrix.yml").to_json()


def matrix_rows() -> tuple[list[dict], list[dict]]:
    """(Linux rows, Windows rows) of `invoke matrix --json`."""
    rows = json.loads(tasks_matrix_json())
    return [r for r in rows if r["family"] != "windows"], [r for r in rows if r["family"] == "windows"]


def nightly_runner(row: dict, arch: str) -> str:
    """Where arches.py says the nightly builds `arch`: a native runner, or the row's own under QEMU."""
    runner = arches.get(arch).runner
    return row["runner"] if runner == "qemu" else runner


def test_every_row_gets_past_every_refusal_on_its_own_runner(monkeypatch, capsys, tmp_path):
    outcomes = walk(ROOT / "matrix.yml", load_workflows(), monkeypatch, capsys, tmp_path)
    assert problems(outcomes) == []
    linux, windows = matrix_rows()
    # One job per (Linux row, architecture), on that architecture's runner: built, verified (every configuration)
    # and reported for that architecture.
    arch_jobs = [o for o in outcomes if o.job == "nightly/arch"]
    assert sorted((o.command.split()[1], o.option("--os"), o.option("--arch"), o.runner) for o in arch_jobs) == sorted(
        (task, r["os"], arch, nightly_runner(r, arch)) for r in linux for arch in r["arches"]
        for task in ("build", "verify", "report"))
    # Every configuration natively; pydebug (the compile and the smoke subset) under QEMU.
    assert {(o.option("--arch"), o.option("--config")) for o in arch_jobs if o.command.split()[1] == "verify"} == {
        (arch, "pydebug" if arches.get(arch).runner == "qemu" else "all") for r in linux for arch in r["arches"]}
    assert {o.runner for o in arch_jobs} == {"ubuntu-24.04", "ubuntu-24.04-arm"}  # arm64 natively, the rest on amd64
    # Each Linux row published once, by its own publish job, every architecture of it at once.
    assert sorted((o.command.split()[1], o.option("--os"), o.option("--arch")) for o in outcomes
                  if o.job == "nightly/publish") == sorted(("publish", r["os"], None) for r in linux)
    # Windows rows keep their one job on their runner: build, verify every configuration, publish.
    assert sorted((o.command.split()[1], o.option("--os"), o.runner) for o in outcomes if o.job == "nightly/image") == \
        sorted((task, r["os"], r["runner"]) for r in windows for task in ("build", "verify", "publish"))
    assert any("--config all" in o.command and "windows-2022" in o.command for o in outcomes)
    # CI runs .ci/run, which builds and verifies every debian-12 configuration on ubuntu, and builds arm64 under QEMU.
    ci = [o.command for o in outcomes if o.job.startswith("ci/")]
    configs = next(r["configurations"] for r in linux if r["os"] == "debian-12")
    assert {c.split("--config ")[1].split()[0] for c in ci if " verify " in f" {c} "} == set(configs)


def test_a_row_without_a_cpython_source_fails_the_walk(monkeypatch, capsys, tmp_path):
    text = (ROOT / "matrix.yml").read_text()
    broken = re.sub(r"\n    cpython: https://www\.python\.org/\S+\n", "\n", text)
    assert broken != text
    path = tmp_path / "matrix.yml"
    path.write_text(broken)
    found = problems(walk(path, load_workflows(), monkeypatch, capsys, tmp_path))
    assert len(found) == 1, found
    assert found[0].startswith("nightly/image on windows-2022: invoke verify --os windows-2022 --config all: error: ")
    assert found[0].endswith("rows.windows-2022.cpython is not set: pass --cpython DIR|TARBALL|URL|git:REF")


def test_a_windows_row_sent_to_a_linux_runner_fails_the_walk(monkeypatch, capsys, tmp_path):
    nightly = (WORKFLOWS / "nightly.yml").read_text()
    broken = nightly.replace("runs-on: ${{ matrix.row.runner }}", "runs-on: ubuntu-24.04")
    assert broken != nightly
    found = problems(walk(ROOT / "matrix.yml", load_workflows(nightly=broken), monkeypatch, capsys, tmp_path))
    assert [line.split(": error: ")[0] for line in found] == [
        "nightly/image on ubuntu-24.04: invoke build --os windows-2022 --refresh",
        "nightly/image on ubuntu-24.04: invoke verify --os windows-2022 --config all"]
    assert "cannot build here: windows-2022 needs a Windows Docker engine, this one runs linux containers" in found[0]
    assert "cannot verify here: windows-2022 needs a Windows Docker engine" in found[1]


def test_a_debian_archive_source_on_a_windows_runner_is_refused_before_any_work(monkeypatch, capsys, tmp_path):
    """The matrix refuses it; were it let through, verify would stop at once, not after building."""
    from fleetbake.pipeline.matrix import MatrixError, load

    text = (ROOT / "matrix.yml").read_text()
    path = tmp_path / "matrix.yml"
    path.write_text(re.sub(r"(\n    cpython: )https://www\.python\.org/\S+\n", r"\1debian:trixie/python3.13\n", text))
    with pytest.raises(MatrixError, match="rows.windows-2022.cpython: .*apt-get, which the windows-2022 runner does not have"):
        load(path)
    monkeypatch.setattr(engine, "client", lambda: SimulatedEngine("windows"))
    monkeypatch.setattr(cpython.shutil, "which", lambda name, *a, **k: None)
    monkeypatch.setenv("FLEETBAKE_CACHE", str(tmp_path / "cache"))  # nothing cached
    from fleetbake.errors import CannotBuildHere

    with pytest.raises(CannotBuildHere, match="cannot fetch here: --cpython debian:trixie/python3.13 comes from Debian's archive"):
        cpython.check_fetchable("debian:trixie/python3.13")


def test_a_windows_job_left_on_pwsh_fails_the_walk(monkeypatch, capsys, tmp_path):
    """GitHub's Windows runners run `run:` steps in pwsh, where "$ROW" is an unset variable, not the environment."""
    nightly = (WORKFLOWS / "nightly.yml").read_text()
    broken = re.sub(r"\n    defaults:\n      run:\n(        #.*\n)?        shell: bash\n", "\n", nightly)
    assert broken != nightly
    found = problems(walk(ROOT / "matrix.yml", load_workflows(nightly=broken), monkeypatch, capsys, tmp_path))
    assert found and all(line.startswith("nightly/image on windows-2022: invoke ") for line in found), found
    assert "invoke build --os '' --refresh: error: " in found[0] and "unknown row ''" in found[0]


def test_a_linux_job_without_debians_keyring_fails_the_walk(monkeypatch, capsys, tmp_path):
    nightly = (WORKFLOWS / "nightly.yml").read_text()
    broken = re.sub(r"\n      - name: Debian's archive keyring.*\n.*debian-archive-keyring\n", "\n", nightly)
    assert broken != nightly
    found = problems(walk(ROOT / "matrix.yml", load_workflows(nightly=broken), monkeypatch, capsys, tmp_path))
    linux, _ = matrix_rows()
    assert sorted(line.split(": error: ")[0] for line in found) == sorted(
        f"nightly/arch on {nightly_runner(r, arch)}: invoke verify --os {r['os']} --arch {arch} --config "
        f"{'pydebug' if arches.get(arch).runner == 'qemu' else 'all'}" for r in linux for arch in r["arches"])
    assert all("cannot fetch here: --cpython debian:trixie/python3.13: apt checks Debian's archive" in line
               for line in found)


def test_an_emulated_job_without_qemu_fails_the_walk(monkeypatch, capsys, tmp_path):
    """ppc64le, s390x and riscv64 have no hosted runner: without docker/setup-qemu-action's binfmt_misc handlers
    their jobs cannot build or verify (the runner's own Ubuntu registers none)."""
    nightly = (WORKFLOWS / "nightly.yml").read_text()
    broken = re.sub(r"\n      - name: QEMU for this architecture.*?(?=\n      - name: build)", "", nightly, flags=re.S)
    assert broken != nightly and QEMU_ACTION not in broken
    found = problems(walk(ROOT / "matrix.yml", load_workflows(nightly=broken), monkeypatch, capsys, tmp_path))
    linux, _ = matrix_rows()
    emulated = [(r, arch) for r in linux for arch in r["arches"] if arches.get(arch).runner == "qemu"]
    assert {"ppc64le", "s390x", "riscv64"} <= {arch for _, arch in emulated}
    failed = sorted(line.split(": error: ")[0] for line in found)
    assert failed == sorted(f"nightly/arch on ubuntu-24.04: invoke {task} --os {r['os']} --arch {arch}{rest}"
                            for r, arch in emulated for task, rest in (("build", " --refresh"), ("verify", " --config pydebug")))
    assert all(f"cannot {line.split()[4]} {line.split('--arch ')[1].split()[0]} here: no binfmt_misc handler qemu-" in line
               for line in found), found


def test_an_arm64_job_sent_to_an_amd64_runner_fails_the_walk(monkeypatch, capsys, tmp_path):
    """The jq program's runner is what arches.py says: were arm64 (or any other) sent to ubuntu-24.04 without QEMU,
    its job could build nothing."""
    nightly = (WORKFLOWS / "nightly.yml").read_text()
    broken = nightly.replace('$row.arch_runners[.] as $runner', '"ubuntu-24.04" as $runner')
    assert broken != nightly
    found = problems(walk(ROOT / "matrix.yml", load_workflows(nightly=broken), monkeypatch, capsys, tmp_path))
    assert found and all(line.startswith("nightly/arch on ubuntu-24.04: invoke ") for line in found), found
    assert not any("--arch amd64" in line for line in found)
    assert any("invoke build --os debian-12 --arch arm64 --refresh: error: cannot build arm64 here: no binfmt_misc "
               "handler qemu-aarch64" in line for line in found), found


def nightly() -> dict:
    return yaml.safe_load((WORKFLOWS / "nightly.yml").read_text())


def nightly_steps(job: str) -> list[dict]:
    return nightly()["jobs"][job]["steps"]


def step_index(steps: list[dict], needle: str) -> int:
    """The first step whose run text, action, name or inputs hold `needle`."""
    return next(i for i, step in enumerate(steps) if any(needle in str(step.get(key, "")) for key in
                                                         ("run", "uses", "name", "with")))


def nightly_outputs() -> dict[str, list]:
    return matrix_outputs(nightly(), json.loads(tasks_matrix_json()))


def test_the_matrix_job_gives_each_linux_row_and_architecture_a_job_on_its_runner():
    """The workflow's jq, run on `invoke matrix --json`: every (Linux row, architecture) once, with the runner and the
    QEMU flag arches.py gives it; every Linux row once for publishing; each Windows row as it was."""
    outputs = nightly_outputs()
    linux, windows = matrix_rows()
    assert outputs["jobs"] == [{"os": r["os"], "arch": arch, "runner": nightly_runner(r, arch),
                                "qemu": arches.get(arch).runner == "qemu",
                                "config": "pydebug" if arches.get(arch).runner == "qemu" else "all"}
                               for r in linux for arch in r["arches"]]
    assert {(job["arch"], job["runner"], job["qemu"]) for job in outputs["jobs"] if job["os"] == "debian-13"} == {
        ("amd64", "ubuntu-24.04", False), ("arm64", "ubuntu-24.04-arm", False), ("ppc64le", "ubuntu-24.04", True),
        ("s390x", "ubuntu-24.04", True), ("riscv64", "ubuntu-24.04", True)}
    assert outputs["rows"] == [{"os": r["os"], "arches": r["arches"]} for r in linux]
    assert outputs["windows"] == windows and windows
    jobs = nightly()["jobs"]
    assert jobs["arch"]["strategy"]["matrix"] == {"job": "${{ fromJSON(needs.matrix.outputs.jobs) }}"}
    assert jobs["arch"]["runs-on"] == "${{ matrix.job.runner }}" and jobs["arch"]["strategy"]["fail-fast"] is False
    assert jobs["arch"]["env"] == {"ROW": "${{ matrix.job.os }}", "ARCH": "${{ matrix.job.arch }}",
                                   "CONFIG": "${{ matrix.job.config }}"}
    assert jobs["image"]["strategy"]["matrix"] == {"row": "${{ fromJSON(needs.matrix.outputs.windows) }}"}
    assert set(jobs["matrix"]["outputs"]) == set(outputs)


def test_qemu_is_set_up_on_the_emulated_jobs_only_and_for_their_architecture():
    steps = nightly_steps("arch")
    qemu = step_index(steps, QEMU_ACTION)
    assert qemu < step_index(steps, "invoke build ")
    for job in nightly_outputs()["jobs"]:
        emulated = arches.get(job["arch"]).runner == "qemu"
        assert runs_on(steps[qemu], "linux", "job", job) is emulated, job
        assert substitute(steps[qemu]["with"]["platforms"], "job", job) == job["arch"]
    assert steps[qemu]["with"]["cache-image"] is False
    assert not any(QEMU_ACTION in step.get("uses", "") for name, job in nightly()["jobs"].items() if name != "arch"
                   for step in job["steps"])


def test_emulated_jobs_get_githubs_longest_job_and_native_ones_less():
    from test_ci_workflow import GITHUB_JOB_LIMIT

    timeout = nightly()["jobs"]["arch"]["timeout-minutes"]
    found = re.fullmatch(r"\$\{\{ matrix\.job\.qemu && (\d+) \|\| (\d+) \}\}", timeout)
    assert found, timeout
    emulated, native = map(int, found.groups())
    assert emulated == GITHUB_JOB_LIMIT and 0 < native < emulated
    assert nightly()["jobs"]["image"]["timeout-minutes"] <= GITHUB_JOB_LIMIT


def test_each_arch_job_reports_its_image_and_hands_it_over_only_when_every_step_passed():
    steps = nightly_steps("arch")
    build, verify, report = (step_index(steps, f"invoke {task} ") for task in ("build", "verify", "report"))
    reports, save, image = (step_index(steps, needle) for needle in
                            ("keep the records", "docker save", "hand the image over"))
    assert build < verify < report < reports < save < image == len(steps) - 1
    assert 'cat build/reports/*/image/changes.md >> "$GITHUB_STEP_SUMMARY"' in steps[report]["run"]
    assert steps[report]["env"]["FLEETBAKE_REGISTRY_TOKEN"] == "${{ secrets.GITHUB_TOKEN }}"
    # The records go up whatever happened (the page shows failures), under a name per (row, architecture).
    assert steps[reports]["if"] == "${{ !cancelled() }}"
    assert steps[reports]["with"] == {"name": "reports-${{ matrix.job.os }}-${{ matrix.job.arch }}",
                                      "path": "build/reports", "if-no-files-found": "ignore"}
    # The image only after every step passed: no always(), no !cancelled(), nothing that carries on after a failure.
    assert steps[save]["if"] == steps[image]["if"] == "github.ref == 'refs/heads/main'"
    assert not any("continue-on-error" in step for step in steps)
    assert "continue-on-error" not in nightly()["jobs"]["arch"]
    assert steps[image]["with"]["if-no-files-found"] == "error"
    # The name it saves is the one every build gives the image on every runner (identity.arch_tag).
    from fleetbake.pipeline import identity, matrix as matrix_mod

    m = matrix_mod.load(ROOT / "matrix.yml")
    for job in nightly_outputs()["jobs"]:
        env = {k: substitute(v, "job", job) for k, v in nightly()["jobs"]["arch"]["env"].items()}
        saved = expand(steps[save]["run"].split("|")[0], "bash", env, {})[0]
        assert saved == ["docker", "save", identity.arch_tag(m.rows[job["os"]].on(job["arch"]))]


def gate_run(tmp_path, arches_present: list[str], row: dict) -> subprocess.CompletedProcess:
    """The publish job's gate step, run by bash as GitHub runs it, on the artifacts the row's arch jobs handed over."""
    jobs = nightly()["jobs"]
    upload = jobs["arch"]["steps"][step_index(jobs["arch"]["steps"], "hand the image over")]["with"]
    steps = jobs["publish"]["steps"]
    download = steps[step_index(steps, "actions/download-artifact@")]["with"]
    assert download["path"] == "${{ runner.temp }}/images" and "merge-multiple" not in download
    images = tmp_path / "images"  # each artifact in a folder of its name (no merge-multiple)
    for arch in arches_present:
        name = substitute(upload["name"], "job", {"os": row["os"], "arch": arch})
        assert re.fullmatch(substitute(download["pattern"], "row", row).replace("*", ".*"), name)
        (images / name).mkdir(parents=True)
        (images / name / Path(upload["path"]).name).write_bytes(b"image")
    env = {k: substitute(v, "row", row) for k, v in jobs["publish"]["env"].items()}
    script = steps[step_index(steps, "every architecture's job of the row passed")]["run"]
    return subprocess.run(["bash", "--noprofile", "--norc", "-eo", "pipefail", "-c", script], capture_output=True,
                          text=True, env={"PATH": "/usr/bin:/bin", "RUNNER_TEMP": str(tmp_path), **env})


def test_each_linux_row_is_published_once_after_every_architectures_job_of_it_passed(tmp_path):
    jobs = nightly()["jobs"]
    publish = jobs["publish"]
    # GitHub waits for every job of the arch matrix (its row's among them); the job runs whatever other rows did.
    assert publish["needs"] == ["matrix", "arch"]
    assert "!cancelled()" in publish["if"] and "needs.matrix.result == 'success'" in publish["if"]
    assert "github.ref == 'refs/heads/main'" in publish["if"] and "always()" not in publish["if"]
    assert publish["strategy"] == {"fail-fast": False, "matrix": {"row": "${{ fromJSON(needs.matrix.outputs.rows) }}"}}
    assert publish["env"] == {"ROW": "${{ matrix.row.os }}", "ARCHES": "${{ join(matrix.row.arches, ' ') }}"}
    steps = publish["steps"]
    images, gate, load, records, push = (step_index(steps, needle) for needle in (
        "image-${{ matrix.row.os }}-*", "every architecture's job of the row passed", "docker load",
        "reports-${{ matrix.row.os }}-*", "invoke publish "))
    assert images < gate < load < push and records < push
    # Nothing of the row is pushed unless every step before the push passed; no step may carry on after a failure.
    assert not any("if" in step for step in steps[:push + 1])
    assert not any("continue-on-error" in step for step in steps) and "continue-on-error" not in publish
    assert steps[records]["with"] == {"pattern": "reports-${{ matrix.row.os }}-*", "path": "build/reports",
                                      "merge-multiple": True}
    # The gate itself, run: every architecture's image there, or the row stops with one line naming what is missing.
    row = next(r for r in nightly_outputs()["rows"] if r["os"] == "debian-12")
    assert gate_run(tmp_path / "all", row["arches"], row).returncode == 0
    missing = gate_run(tmp_path / "short", [a for a in row["arches"] if a != "s390x"], row)
    assert missing.returncode == 1
    assert missing.stdout.strip() == "::error::debian-12: nothing published: no passing nightly job for s390x"
    none = gate_run(tmp_path / "none", [], row)
    assert none.returncode == 1 and none.stdout.strip().endswith(f"for {' '.join(row['arches'])}")
    # Each architecture's image loaded under the name the arch job saved.
    assert 'docker load --input "$RUNNER_TEMP/images/image-$ROW-$arch/image.tar.gz"' in steps[load]["run"]
    assert "for arch in $ARCHES" in steps[load]["run"]


def test_the_publish_job_looks_up_each_architecture_under_the_name_its_job_saved(monkeypatch):
    """The publish runner (amd64) has only what `docker load` gave it: each architecture's image under the name its
    arch job saved. publish must look each one up by that name, the host's own architecture's too."""
    from fleetbake.pipeline import identity, matrix as matrix_mod, publish as publish_mod

    jobs = nightly()["jobs"]
    assert runner_machine(jobs["publish"]["runs-on"]) == "x86_64"
    monkeypatch.setattr(arches.platform, "machine", lambda: runner_machine(jobs["publish"]["runs-on"]))
    m = matrix_mod.load(ROOT / "matrix.yml")
    save = nightly_steps("arch")[step_index(nightly_steps("arch"), "docker save")]["run"].split("|")[0]
    looked_up = []
    monkeypatch.setattr(publish_mod, "_inspect", lambda tag: looked_up.append(tag))
    for row in nightly_outputs()["rows"]:
        looked_up.clear()
        publish_mod.gate(m.rows[row["os"]])
        loaded = [expand(save, "bash", {"ROW": row["os"], "ARCH": arch}, {})[0][-1] for arch in row["arches"]]
        assert looked_up == loaded, row["os"]
    assert loaded == [identity.arch_tag(m.rows[row["os"]].on(arch)) for arch in row["arches"]]


def test_nightly_reports_and_publishes_against_the_same_registry_from_main_only():
    arch, publish, image = (nightly_steps(job) for job in ("arch", "publish", "image"))
    report = arch[step_index(arch, "invoke report ")]
    pushes = [steps[step_index(steps, "invoke publish ")] for steps in (publish, image)]
    # Compared with what publish pushed last (a runner has no earlier records): the same REGISTRY/NAMESPACE.
    assert '--against "ghcr.io/${OWNER,,}"' in report["run"]
    for push in pushes:
        assert '--registry "ghcr.io/${OWNER,,}"' in push["run"] and push["id"] == "publish"
        assert report["env"]["OWNER"] == push["env"]["OWNER"] == "${{ github.repository_owner }}"
        assert push["env"]["FLEETBAKE_REGISTRY_TOKEN"] == "${{ secrets.GITHUB_TOKEN }}"
        assert "--json" in push["run"] and '>> "$GITHUB_OUTPUT"' in push["run"]
    assert "github.ref == 'refs/heads/main'" in nightly()["jobs"]["publish"]["if"]
    assert pushes[1]["if"] == "github.ref == 'refs/heads/main'"  # Windows: its one job publishes, from main only
    windows = nightly()["jobs"]["image"]["steps"]
    upload = windows[step_index(windows, "actions/upload-artifact@")]
    assert upload["with"]["path"] == "build/reports" and upload["with"]["name"] == "reports-${{ matrix.row.os }}"


def published_json(*, index_pushed: bool, arches_pushed: dict[str, str | None]) -> str:
    """What `invoke publish --json` prints, from publish.py's own classes: a row, each architecture pushed (with its
    report artifact, or None) or found in the registry already."""
    from fleetbake.pipeline import publish as publish_mod

    result = publish_mod.Published("r", repository="ghcr.io/o/worker", digest="sha256:" + "i" * 64)
    result.unchanged = not index_pushed
    for number, (arch, report) in enumerate(arches_pushed.items()):
        done = publish_mod.ArchPublished(arch, arches.get(arch).platform, "sha256:" + "c" * 64,
                                         digest=f"sha256:{number}" + "d" * 63, artifact=report)
        done.unchanged = report == "unchanged"
        done.artifact = None if done.unchanged else report
        result.arches.append(done)
    return publish_mod.to_json([result])


def test_nightly_attests_only_what_it_really_pushed():
    steps = nightly_steps("publish")
    push = step_index(steps, "invoke publish")
    attests = [i for i, step in enumerate(steps) if step.get("uses", "").startswith("actions/attest-build-provenance@")]
    assert len(attests) == 2 and push < min(attests)
    index, each = (steps[i] for i in attests)
    assert index["if"] == "steps.publish.outputs.pushed == 'true'"  # not when the registry already had the index
    assert index["with"] == {"subject-name": "${{ steps.publish.outputs.name }}",
                             "subject-digest": "${{ steps.publish.outputs.digest }}", "push-to-registry": True}
    # Each architecture's image and report this run pushed, by their digests, in one attestation.
    assert each["if"] == "steps.publish.outputs.subjects != '0'"
    assert each["with"] == {"subject-checksums": "${{ runner.temp }}/subjects.txt"}
    assert '> "$RUNNER_TEMP/subjects.txt"' in steps[push]["run"]
    assert 'echo "subjects=$(wc -l < "$RUNNER_TEMP/subjects.txt")" >> "$GITHUB_OUTPUT"' in steps[push]["run"]
    # jq itself, on what publish --json prints (publish.py's classes): the index's outputs, and a checksum line
    # (hex, two spaces, name) for each image and report pushed; nothing for what the registry already held.
    outputs, subjects = re.findall(r"jq -r '([^']+)'", steps[push]["run"])
    document = published_json(index_pushed=True, arches_pushed={"amd64": "sha256:" + "a" * 64, "arm64": "unchanged"})
    assert jq(outputs, json.loads(document)).splitlines() == [
        "pushed=true", "name=ghcr.io/o/worker", "digest=sha256:" + "i" * 64]
    assert jq(subjects, json.loads(document)).splitlines() == [
        "0" + "d" * 63 + "  ghcr.io/o/worker", "a" * 64 + "  ghcr.io/o/worker"]
    document = published_json(index_pushed=False, arches_pushed={"amd64": "unchanged"})
    assert jq(outputs, json.loads(document)).splitlines()[0] == "pushed=false"
    assert jq(subjects, json.loads(document)) == ""
    # Windows rows: their job attests the pushed index (no report artifact: none is made of Windows images yet).
    windows = nightly_steps("image")
    attests = [step for step in windows if step.get("uses", "").startswith("actions/attest-build-provenance@")]
    assert [(step["if"], step["with"]) for step in attests] == [(index["if"], index["with"])]
    assert jq_program(windows[step_index(windows, "invoke publish")]["run"]) == outputs
    jobs = nightly()["jobs"]
    assert [name for name, job in jobs.items() if "attestations" in (job.get("permissions") or {})] == ["publish", "image"]
    for name in ("publish", "image"):
        assert jobs[name]["permissions"] == {"contents": "read", "packages": "write", "attestations": "write",
                                             "id-token": "write"}
    assert jobs["arch"]["permissions"] == {"contents": "read", "packages": "read"}
    assert jobs["matrix"]["permissions"] == {"contents": "read"}


def test_nightly_puts_the_matrix_page_on_github_pages_from_every_rows_records():
    jobs = nightly()["jobs"]
    pages = jobs["pages"]
    assert pages["needs"] == ["arch", "image"] and "github.ref == 'refs/heads/main'" in pages["if"]
    assert pages["permissions"] == {"contents": "read", "pages": "write", "id-token": "write"}
    assert pages["environment"]["name"] == "github-pages"
    steps = pages["steps"]
    download, page = step_index(steps, "actions/download-artifact@"), step_index(steps, "invoke page")
    upload, deploy = step_index(steps, "actions/upload-pages-artifact@"), step_index(steps, "actions/deploy-pages@")
    assert download < page < upload < deploy
    assert steps[download]["with"] == {"pattern": "reports-*", "path": "build/reports", "merge-multiple": True}
    assert steps[upload]["with"]["path"] == "build/reports"
    # Every action, here as elsewhere, pinned by a full commit SHA.
    for job in jobs.values():
        for step in job["steps"]:
            if "uses" in step:
                assert re.fullmatch(r"[\w.-]+/[\w.-]+@[0-9a-f]{40}", step["uses"]), step["uses"]


def test_invoke_page_writes_the_matrix_page_without_an_engine(tmp_path):
    from conftest import invoke

    result = invoke("page", env={"FLEETBAKE_BUILD_DIR": str(tmp_path), "DOCKER_HOST": "unix:///nonexistent"})
    assert result.returncode == 0, result.stderr
    assert (tmp_path / "reports" / "index.html").is_file() and result.stdout.strip().endswith("index.html")
