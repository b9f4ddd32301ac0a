"""Every claim of the nightly and CI workflows, walked.

For each row of `invoke matrix --json`, each `invoke` command the row's nightly job runs, and each one
the CI jobs run (following .ci/run and scripts/setup.sh), is run here through invoke itself, as on that
job's runner: a Docker engine of the runner's OS (Linux on ubuntu-*, Windows on windows-*) and apt-get
only on ubuntu. The engine is simulated up to the first thing it is asked to really do: a command that
gets there has passed every refusal fleetbake makes by design ("cannot build here", "cannot verify
here", a row without a CPython source...); one that ends before it would fail on every night.
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
from fleetbake.pipeline import cpython, engine

WORKFLOWS = ROOT / ".github" / "workflows"
# Tasks whose outcome depends on the runner: the ones that talk to the engine or fetch sources.
ENGINE_TASKS = {"base", "build", "verify", "report", "publish", "packer"}
INVOKE = re.compile(r"(?:^|[\s(|;&])(?:[\w./-]*/)?invoke\s+([a-z][a-z-]*)([^|;&)\n]*)")
SCRIPT = re.compile(r"(?:^|[\s;&])((?:\.ci|scripts)/[\w.-]+)")


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


def runner_os(label: str) -> str:
    for prefix, system in (("ubuntu-", "linux"), ("windows-", "windows")):
        if label.startswith(prefix):
            return system
    raise AssertionError(f"unknown runner label {label!r}: say which OS it runs")


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


def runs_on(step: dict, system: str) -> bool:
    """A step's `if:` as far as the runner decides it (runner.os); the others (github.ref, ...) count as true."""
    condition = str(step.get("if", ""))
    match = re.search(r"runner\.os\s*==\s*'(\w+)'", condition)
    return not match or match.group(1).lower() == system


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


def run(argv: list[str], system: str, keyring: bool, matrix: Path, monkeypatch, capsys, tmp_path) -> tuple[bool, str]:
    """Run one command as invoke would on a runner of `system`; (reached the engine's work, error line)."""
    monkeypatch.setattr(engine, "client", lambda: SimulatedEngine(system))
    has_apt = system == "linux"
    monkeypatch.setattr(cpython.shutil, "which", lambda name, *a, **k: f"/usr/bin/{name}" if has_apt else None)
    monkeypatch.setattr(cpython, "DEBIAN_KEYRING", Path("/usr/share/keyrings/debian-archive-keyring.gpg") if keyring
                        else tmp_path / "no-keyring.gpg")
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


def walk(matrix: Path, workflows: dict[str, dict], monkeypatch, capsys, tmp_path) -> list[Outcome]:
    monkeypatch.setenv("FLEETBAKE_BUILD_DIR", str(tmp_path / "build"))
    monkeypatch.setenv("FLEETBAKE_CACHE", str(tmp_path / "cache"))  # nothing cached: each source is fetched
    monkeypatch.chdir(ROOT)
    from fleetbake.pipeline import matrix as matrix_mod

    rows = json.loads(matrix_mod.load(matrix).to_json())
    row_configs = {r["os"]: r["configurations"] for r in rows}
    outcomes = []
    for workflow_name, workflow in workflows.items():
        for job_name, job in workflow["jobs"].items():
            for row in rows if "matrix.row" in json.dumps(job) else [None]:
                label = job["runs-on"].replace("${{ matrix.row.runner }}", row["runner"] if row else "")
                system = runner_os(label)
                env = {k: str(v).replace("${{ matrix.row.os }}", row["os"] if row else "")
                       for k, v in (job.get("env") or {}).items()}
                steps = [step for step in job["steps"] if "run" in step and runs_on(step, system)]
                # Ubuntu runners trust Ubuntu's keys only: Debian's keyring is there if the job installs it.
                keyring = system == "linux" and any("debian-archive-keyring" in scripts_text(step["run"]) for step in steps)
                for step in steps:
                    shell = step_shell(workflow, job, step, system)
                    for command in commands(step["run"]):
                        if command.split()[1] not in ENGINE_TASKS:
                            continue
                        for argv in expand(command, shell, env, row_configs):
                            reached, error = run(argv, system, keyring, matrix, monkeypatch, capsys, tmp_path)
                            outcomes.append(Outcome(f"{workflow_name}/{job_name}", label, shlex.join(argv), reached, error))
    return outcomes


def load_workflows(**replace) -> dict[str, dict]:
    return {name: yaml.safe_load(replace.get(name, (WORKFLOWS / f"{name}.yml").read_text())) for name in ("nightly", "ci")}


def problems(outcomes: list[Outcome]) -> list[str]:
    return [f"{o.job} on {o.runner}: {o.command}: {o.error}" for o in outcomes if not o.reached]


def test_every_row_gets_past_every_refusal_on_its_own_runner(monkeypatch, capsys, tmp_path):
    outcomes = walk(ROOT / "matrix.yml", load_workflows(), monkeypatch, capsys, tmp_path)
    assert problems(outcomes) == []
    # Each row is built, verified (every configuration) and offered to publish by the nightly job, on its runner.
    nightly = {(o.command.split()[1], o.command.split()[o.command.split().index("--os") + 1], o.runner)
               for o in outcomes if o.job == "nightly/image"}
    rows = json.loads(tasks_matrix_json())
    # Reported too, but not Windows rows: no software report or SBOM of Windows images yet (report.py refuses).
    assert nightly == {(task, r["os"], r["runner"]) for r in rows for task in ("build", "verify", "report", "publish")
                       if task != "report" or not r["os"].startswith("windows")}
    assert any("--config all" in o.command and "windows-2022" in o.command for o in outcomes)
    # CI runs .ci/run, which builds and verifies every debian-12 configuration on ubuntu.
    ci = [o.command for o in outcomes if o.job.startswith("ci/")]
    configs = next(r["configurations"] for r in rows if r["os"] == "debian-12")
    assert {c.split("--config ")[1].split()[0] for c in ci if " verify " in f" {c} "} == set(configs)


def tasks_matrix_json() -> str:
    from fleetbake.pipeline import matrix as matrix_mod

    return matrix_mod.load(ROOT / "matrix.yml").to_json()


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
        "nightly/image on ubuntu-24.04: invoke verify --os windows-2022 --config all",
        "nightly/image on ubuntu-24.04: invoke report --os windows-2022 --against ghcr.io/owner"]
    assert "cannot build here: windows-2022 needs a Windows Docker engine, this one runs linux containers" in found[0]
    assert "cannot verify here: windows-2022 needs a Windows Docker engine" in found[1]
    assert "cannot report on here: windows-2022 needs a Windows Docker engine" in found[2]


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
    broken = re.sub(r"\n      - name: Debian's archive keyring.*\n.*\n.*debian-archive-keyring\n", "\n", nightly)
    assert broken != nightly
    found = problems(walk(ROOT / "matrix.yml", load_workflows(nightly=broken), monkeypatch, capsys, tmp_path))
    linux = [r["os"] for r in json.loads(tasks_matrix_json()) if r["runner"].startswith("ubuntu")]
    assert [line.split(":")[0] for line in found] == ["nightly/image on ubuntu-24.04"] * len(linux)
    assert all("cannot fetch here: --cpython debian:trixie/python3.13: apt checks Debian's archive" in line
               for line in found)


def nightly_steps(job: str) -> list[dict]:
    return yaml.safe_load((WORKFLOWS / "nightly.yml").read_text())["jobs"][job]["steps"]


def step_index(steps: list[dict], needle: str) -> int:
    return next(i for i, step in enumerate(steps) if needle in step.get("run", "") or needle in step.get("uses", ""))


def test_nightly_reports_before_it_publishes_and_publishes_from_main_only():
    steps = nightly_steps("image")
    verify, report, publish = (step_index(steps, f"invoke {task} ") for task in ("verify", "report", "publish"))
    assert verify < report < publish
    assert 'cat build/reports/*/image/changes.md >> "$GITHUB_STEP_SUMMARY"' in steps[report]["run"]
    # Compared with what publish pushed last (a runner has no earlier records): the same REGISTRY/NAMESPACE.
    assert '--against "ghcr.io/${OWNER,,}"' in steps[report]["run"] and '--registry "ghcr.io/${OWNER,,}"' in steps[publish]["run"]
    assert steps[report]["env"]["OWNER"] == steps[publish]["env"]["OWNER"] == "${{ github.repository_owner }}"
    assert steps[report]["env"]["FLEETBAKE_REGISTRY_TOKEN"] == "${{ secrets.GITHUB_TOKEN }}"
    # Every Linux row, every night: publish refuses a Linux image without its report (Windows images have none yet).
    assert steps[report]["if"] == "runner.os == 'Linux'"
    assert steps[publish]["if"] == "github.ref == 'refs/heads/main'" and steps[publish]["id"] == "publish"
    assert "--json" in steps[publish]["run"] and '>> "$GITHUB_OUTPUT"' in steps[publish]["run"]
    assert steps[publish]["env"]["FLEETBAKE_REGISTRY_TOKEN"] == "${{ secrets.GITHUB_TOKEN }}"
    upload = steps[step_index(steps, "actions/upload-artifact@")]
    assert upload["with"]["path"] == "build/reports" and upload["with"]["name"] == "reports-${{ matrix.row.os }}"


def test_nightly_attests_only_what_it_really_pushed():
    steps = nightly_steps("image")
    publish = step_index(steps, "invoke publish")
    attests = [i for i, step in enumerate(steps) if step.get("uses", "").startswith("actions/attest-build-provenance@")]
    assert len(attests) == 2 and publish < min(attests)
    image, report = (steps[i] for i in attests)
    assert image["if"] == "steps.publish.outputs.pushed == 'true'"  # not when the registry already had the image
    assert image["with"] == {"subject-name": "${{ steps.publish.outputs.name }}",
                             "subject-digest": "${{ steps.publish.outputs.digest }}", "push-to-registry": True}
    # The report artifact too, by its own digest; a Windows image has none (publish --json says null).
    assert report["if"] == "steps.publish.outputs.pushed == 'true' && steps.publish.outputs.artifact != ''"
    assert report["with"] == {"subject-name": "${{ steps.publish.outputs.name }}",
                              "subject-digest": "${{ steps.publish.outputs.artifact }}", "push-to-registry": True}
    # The outputs the steps read are the ones invoke publish --json writes (pushed, repository, digest, artifact).
    assert all(f'"{key}=\\(.{field})"' in steps[publish]["run"]
               for key, field in (("pushed", "pushed"), ("name", "repository"), ("digest", "digest")))
    assert '"artifact=\\(.artifact // "")"' in steps[publish]["run"]
    # jq itself, on what publish --json prints: a Windows image's null artifact must give `artifact=` (empty).
    program = re.search(r"jq -r '([^']+)'", steps[publish]["run"]).group(1)
    for artifact, line in ((None, "artifact="), ("sha256:" + "a" * 64, "artifact=sha256:" + "a" * 64)):
        out = subprocess.run(["jq", "-r", program], input=json.dumps([{
            "row": "r", "pushed": True, "repository": "ghcr.io/o/worker", "digest": "sha256:" + "b" * 64,
            "artifact": artifact}]), capture_output=True, text=True, check=True).stdout
        assert out.splitlines() == ["pushed=true", "name=ghcr.io/o/worker", "digest=sha256:" + "b" * 64, line]
    jobs = yaml.safe_load((WORKFLOWS / "nightly.yml").read_text())["jobs"]
    assert [name for name, job in jobs.items() if "attestations" in (job.get("permissions") or {})] == ["image"]
    assert jobs["image"]["permissions"] == {"contents": "read", "packages": "write", "attestations": "write",
                                            "id-token": "write"}
    assert jobs["matrix"]["permissions"] == {"contents": "read"}


def test_nightly_puts_the_matrix_page_on_github_pages_from_every_rows_records():
    jobs = yaml.safe_load((WORKFLOWS / "nightly.yml").read_text())["jobs"]
    pages = jobs["pages"]
    assert pages["needs"] == "image" and "github.ref == 'refs/heads/main'" in pages["if"]
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
