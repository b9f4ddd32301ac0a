"""Pull-request CI runs .ci/run itself, and every job that tests does so on the Debian Packer pinned in
scripts/install-debian-packer.sh: the Packer these tests use here."""

import copy
import os
import re
import shlex
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

from conftest import ROOT

WORKFLOWS = ROOT / ".github" / "workflows"
CI = WORKFLOWS / "ci.yml"
INSTALLER = ROOT / "scripts" / "install-debian-packer.sh"
INSTALL = "scripts/install-debian-packer.sh"
GITHUB_JOB_LIMIT = 360  # minutes: GitHub ends a hosted runner's job after 6 hours


def load(path):
    return yaml.safe_load(path.read_text())


def triggers(workflow):
    return workflow.get(True, workflow.get("on")) or {}  # YAML 1.1 reads the `on` key as True


def runs(step):
    return step.get("run", "")


def runs_ci_run(step):
    """The step runs the committed .ci/run itself (its last word), not a copy or a part of it."""
    words = shlex.split(runs(step)) if "\n" not in runs(step).strip() else []
    return bool(words) and words[-1] in (".ci/run", "./.ci/run")


def runs_tests(step):
    """Steps that run the test suite, and so the `packer` first on PATH."""
    return runs_ci_run(step) or bool(re.search(r"\bpytest\b|\binvoke test\b", runs(step)))


def ci_run_problems(workflow):
    problems = []
    if "pull_request" not in triggers(workflow):
        problems.append("not run on pull_request")
    jobs = {name: job for name, job in workflow["jobs"].items() if any(map(runs_ci_run, job.get("steps", [])))}
    if not jobs:
        problems.append("no job runs .ci/run")
    for name, job in jobs.items():
        step = next(s for s in job["steps"] if runs_ci_run(s))
        if not isinstance(job.get("timeout-minutes"), int) or not 0 < job["timeout-minutes"] < GITHUB_JOB_LIMIT:
            problems.append(f"{name}: timeout-minutes {job.get('timeout-minutes')!r}, not below {GITHUB_JOB_LIMIT}")
        if job.get("runs-on") != "ubuntu-24.04":
            problems.append(f"{name}: runs on {job.get('runs-on')!r}, not the pinned ubuntu-24.04")
        for where in (job, step):
            for key in ("if", "continue-on-error"):
                if key in where:
                    problems.append(f"{name}: {key}: {where[key]!r} (a pull request must run it, and fail with it)")
        words = shlex.split(runs(step))
        if words[0] != "sudo" or 'PATH=$PATH' not in runs(step):
            problems.append(f"{name}: .ci/run must run as root with the job's PATH (Debian's Packer first)")
    return problems


def install_problems(workflow):
    """Every job that runs the tests has installed Debian's Packer (after the checkout) in an earlier step."""
    problems = []
    for name, job in workflow["jobs"].items():
        steps = job.get("steps", [])
        checkout = next((i for i, s in enumerate(steps) if s.get("uses", "").startswith("actions/checkout@")), None)
        install = next((i for i, s in enumerate(steps) if INSTALL in runs(s) and "if" not in s), None)
        for i, step in enumerate(steps):
            if runs_tests(step) and (install is None or install > i or checkout is None or checkout > install):
                problems.append(f"{name}: step {i + 1} ({runs(step)!r}) runs before {INSTALL} has run")
    return problems


def jobs_that_test(workflow):
    return [name for name, job in workflow["jobs"].items() if any(map(runs_tests, job.get("steps", [])))]


def pinned(name):
    values = re.findall(rf"^{name}=(\S+)$", INSTALLER.read_text(), flags=re.MULTILINE)
    assert len(values) == 1, f"{INSTALLER.name} pins {name} once: {values}"
    return values[0]


def test_pull_requests_run_the_ci_script_itself():
    """A contributor's pull request proves what .ci/run proves here, within GitHub's job limit."""
    assert ci_run_problems(load(CI)) == []


def test_the_ci_run_check_catches_a_weakened_workflow():
    ci = load(CI)
    job = next(name for name, j in ci["jobs"].items() if any(map(runs_ci_run, j["steps"])))

    def problems_after(change):
        workflow = copy.deepcopy(ci)
        steps = workflow["jobs"][job]["steps"]
        change(workflow, workflow["jobs"][job], next(s for s in steps if runs_ci_run(s)))
        return " / ".join(ci_run_problems(workflow))

    assert "not run on pull_request" in problems_after(lambda w, j, s: triggers(w).pop("pull_request", None))
    assert "timeout-minutes None" in problems_after(lambda w, j, s: j.pop("timeout-minutes", None))
    assert "timeout-minutes 360" in problems_after(lambda w, j, s: j.update({"timeout-minutes": 360}))
    assert "runs on 'ubuntu-latest'" in problems_after(lambda w, j, s: j.update({"runs-on": "ubuntu-latest"}))
    assert "if: " in problems_after(lambda w, j, s: j.update({"if": "github.event_name == 'push'"}))
    assert "continue-on-error: " in problems_after(lambda w, j, s: s.update({"continue-on-error": True}))
    assert "as root" in problems_after(lambda w, j, s: s.update({"run": "bash .ci/run"}))
    assert "as root" in problems_after(lambda w, j, s: s.update({"run": "sudo bash .ci/run"}))  # secure_path
    assert "no job runs .ci/run" in problems_after(lambda w, j, s: s.update({"run": s["run"] + " --skip"}))
    assert "no job runs .ci/run" in problems_after(lambda w, j, s: w["jobs"].pop(job))


def test_every_job_that_tests_installs_debian_packer_first():
    workflows = {path.name: load(path) for path in sorted(WORKFLOWS.glob("*.yml"))}
    assert {name: install_problems(workflow) for name, workflow in workflows.items()} == dict.fromkeys(workflows, [])
    assert len(jobs_that_test(workflows["ci.yml"])) >= 2  # the unit tests and .ci/run: the check is not vacuous


def test_the_install_check_catches_a_missing_or_late_install():
    ci = load(CI)
    found = install_problems(ci)
    for job in jobs_that_test(ci):
        steps = ci["jobs"][job]["steps"]
        install = next((i for i, s in enumerate(steps) if INSTALL in runs(s)), None)
        if install is None:
            continue  # test_every_job_that_tests_installs_debian_packer_first fails on this job
        dropped = copy.deepcopy(ci)
        del dropped["jobs"][job]["steps"][install]
        assert len(install_problems(dropped)) > len(found), f"{job} without the install step"
        late = copy.deepcopy(ci)
        late["jobs"][job]["steps"].append(late["jobs"][job]["steps"].pop(install))
        assert len(install_problems(late)) > len(found), f"{job} installing after its tests"
        skipped = copy.deepcopy(ci)
        skipped["jobs"][job]["steps"][install]["if"] = "false"
        assert len(install_problems(skipped)) > len(found), f"{job} with a conditional install step"
        unchecked = copy.deepcopy(ci)  # the script comes with the checkout
        unchecked["jobs"][job]["steps"] = [s for s in steps if "uses" not in s or "checkout" not in s["uses"]]
        assert len(install_problems(unchecked)) > len(found), f"{job} installing before its checkout"


def test_the_pinned_packer_is_the_packer_these_tests_use():
    """The pin and the local tool cannot drift apart: `packer version` from PATH is the pinned upstream version,
    and where that packer is Debian's installed package, the very same Debian version."""
    version = pinned("version")
    binary = shutil.which("packer")
    assert binary, "packer is not installed: scripts/setup.sh installs it"
    out = subprocess.run([binary, "version"], capture_output=True, text=True, timeout=60, check=True,
                         env={**os.environ, "CHECKPOINT_DISABLE": "1"}).stdout
    assert out.splitlines()[0] == f"Packer v{version.split('+')[0]}"
    owner = subprocess.run(["dpkg-query", "-S", os.path.realpath(binary)], capture_output=True, text=True,
                           check=False) if shutil.which("dpkg-query") else None
    if owner is not None and owner.returncode == 0 and owner.stdout.startswith("packer:"):
        installed = subprocess.run(["dpkg-query", "-W", "-f=${Version}", "packer"], capture_output=True, text=True,
                                   check=True).stdout
        assert installed == version


def test_the_pinned_sha256_is_what_debians_signed_index_lists():
    version = pinned("version")
    if not shutil.which("apt-cache"):
        pytest.skip("no apt-cache: not a Debian-based machine")
    shown = subprocess.run(["apt-cache", "show", f"packer={version}"], capture_output=True, text=True, check=False)
    fields = dict(re.findall(r"^(\w+): (.*)$", shown.stdout, flags=re.MULTILINE))
    if shown.returncode != 0 or fields.get("Version") != version:
        # The README's machine (Debian 12, .ci/run) always checks; elsewhere (GitHub's Ubuntu runner) the install
        # script itself refuses a .deb with another hash.
        debian = Path("/etc/debian_version")
        assert not (debian.is_file() and debian.read_text().startswith("12.")), f"apt does not list packer {version}"
        pytest.skip(f"this machine's apt index does not list packer {version} (not Debian 12)")
    assert fields["Filename"] == f"pool/main/p/packer/packer_{version}_amd64.deb"
    assert fields["SHA256"] == pinned("sha256")
