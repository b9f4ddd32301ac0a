"""fleetbake/pipeline/families.py: each family's plan is the one declaration the Dockerfile and every Packer target run."""

import json
import re
import shlex
import subprocess

import hcl2
import pytest

from conftest import ROOT
from fleetbake.pipeline import families, packer, render
from test_packer import provisioners


RUNTIME = ("ENV", "VOLUME", "WORKDIR", "USER", "LABEL", "HEALTHCHECK", "ENTRYPOINT", "CMD", "STOPSIGNAL", "SHELL", "EXPOSE")


def runtime_block(dockerfile: str) -> list[str]:
    """The Dockerfile's runtime instructions, continuation lines joined, comments dropped."""
    joined = re.sub(r" \\\n\s+", " ", "\n".join(l for l in dockerfile.splitlines() if not l.startswith("#")))
    return [line for line in joined.splitlines() if line.split(" ", 1)[0] in RUNTIME]


def run_lines(body: str) -> list[str]:
    """A RUN's commands, one a line: `RUN first \\` then ` && next \\` ... ` && last`."""
    first, *rest = body.split(" \\\n")
    assert all(line.startswith(" && ") for line in rest), body
    return [first, *(line[len(" && "):] for line in rest)]


@pytest.mark.parametrize("row", ["debian-12", "fedora-44"])
def test_the_dockerfile_and_every_packer_target_run_one_plan(project, row):
    """families.py declares the steps once: the Dockerfile's RUNs (inside the normalize wrapper, Docker's alone) and
    each target's shell steps are the same lines, in the same order, and the docker target's `changes` are the
    Dockerfile's runtime instructions."""
    row = project.rows[row]
    plan = families.plan(row)
    context = render.render_row(project, row)
    dockerfile = context["Dockerfile"].content.decode()
    runs = [run.line() for layer in plan.layers for run in layer.runs]
    # Each layer: one `COPY layers/<n>/ /` of its files, then one RUN of its commands between the clock read
    # before them and normalize-layer.sh after them (the layer's times made the inputs').
    normalize = f'{families.PROVISION}/{families.NORMALIZE} "$started"'
    steps = [(step, body if step == "COPY" else run_lines(body))
             for step, body in re.findall(r"^(COPY|RUN) ((?:.* \\\n)*.*)$", dockerfile, re.MULTILINE)]
    expected = []
    for n, layer in enumerate(plan.layers, start=1):
        expected += [("COPY", f"{families.LAYERS_DIR}/{n}/ /")] if layer.copies else []
        expected += [("RUN", ["started=$(date +%s)", *(run.line() for run in layer.runs), normalize])] if layer.runs else []
    assert steps == expected
    assert [line for step, lines in steps if step == "RUN" for line in lines[1:-1]] == runs
    # normalize-layer.sh is in the image from the first RUN on: copied, executable, with the first layer's files.
    first = next(n for n, layer in enumerate(plan.layers, start=1) if layer.runs)
    script = render.placed(row, f"scripts/{families.NORMALIZE}")
    assert script == f"{families.LAYERS_DIR}/{first}{families.PROVISION}/{families.NORMALIZE}" and context[script].executable
    assert runtime_block(dockerfile) == plan.runtime.instructions()
    for target in packer.targets(row):
        template = packer.write(project, row, target, log=lambda _: None)
        inline = [line.strip('"') for kind, body in provisioners(template) if kind == "shell" for line in body["inline"]]
        ran = [line for line in inline if "/opt/fleetbake/provision/" in line and not line.startswith("install ")]
        if target == "docker":
            assert ran == runs
            source = next(iter(hcl2.loads(template.read_text())["source"][0]['"docker"'].values()))
            assert [json.loads(change) for change in source["changes"][:-1]] == plan.runtime.instructions()
        else:  # the AMI's own uid and boto3, nothing else
            ami = families.plan(row, uid=row.spec.ami.uid, pip_extras="boto3")
            assert ran == [run.line() for layer in ami.layers for run in layer.runs]
            assert [r for r in ran if r not in runs] == [
                f"WORKER_USER=buildbot WORKER_UID={row.spec.ami.uid} /opt/fleetbake/provision/create-user.sh",
                "BUILDBOT_WORKER_VERSION=4.3.0 WORKER_REQUIREMENTS=/opt/fleetbake/provision/worker-requirements.txt"
                " WORKER_PIP_EXTRAS=boto3 /opt/fleetbake/provision/install-worker.sh"]


def test_runtime_instructions_are_what_docker_commit_takes():
    """No STOPSIGNAL: Docker 20.10's `docker commit --change` (Packer's docker builder) refuses it; SIGTERM is the default."""
    assert not any(line.startswith("STOPSIGNAL") for line in families.Runtime(
        env=(("A", "b c"),), volume="/v", workdir="/v", cmd=("x",), entrypoint=("y",),
        healthcheck=families.Healthcheck(("--interval=1s",), ("z",))).instructions())
    assert families.quote_word("plain-1.2:3/x") == "plain-1.2:3/x"
    assert families.quote_word('say "hi" $HOME') == '"say \\"hi\\" \\$HOME"'


def test_the_ami_runs_the_images_entrypoint_with_the_images_environment(project):
    """The AMI's unit starts what the image's ENTRYPOINT starts, and its drop-in gives it the image's ENV."""
    row = project.rows["debian-12"]
    plan = families.plan(row, uid=row.spec.ami.uid, pip_extras="boto3")
    unit = (ROOT / "images" / "ami" / "fleetbake-worker.service").read_text()
    [exec_start] = re.findall(r"^ExecStart=(.+)$", unit, re.MULTILINE)
    assert exec_start == shlex.join([*families.ENTRYPOINT, "worker"])
    assert plan.runtime.entrypoint[-len(families.ENTRYPOINT):] == families.ENTRYPOINT
    [dropin] = [run.command for run in families.ami_service(plan.runtime).runs if families.AMI_DROPIN in run.command]
    out = subprocess.run(["sh", "-c", dropin.replace(families.AMI_DROPIN, "/dev/stdout").split(" && ", 1)[1]
                          .replace(" && chmod 0644 /dev/stdout", "")], capture_output=True, text=True, check=True).stdout
    assert out.splitlines() == ["[Service]", *(f'Environment="{k}={v}"' for k, v in plan.runtime.env)]
    assert f'Environment="FLEETBAKE_USER={row.spec.user}"' in out


@pytest.mark.parametrize("row, wrappers", [("debian-12", "/usr/lib/ccache"), ("ubuntu-24.04", "/usr/lib/ccache"),
                                           ("fedora-44", "/usr/lib64/ccache")])
def test_every_linux_image_has_ccache_but_no_cache_volume(project, row, wrappers):
    """ccache installed with the packages, configured once the build user exists, its wrappers named in the ENV the
    entrypoint reads; /ccache is a folder of the image, not a VOLUME: nothing is cached unless the owner mounts one."""
    row = project.rows[row]
    context = render.render_row(project, row)
    packages = context[render.placed(row, "packages.txt")].content.decode().splitlines()
    assert "ccache" in packages[:packages.index("# CPython build dependencies (matrix row)")]  # the image's, not the row's
    runs = [run.line() for layer in families.plan(row).layers for run in layer.runs]
    [configure] = [i for i, line in enumerate(runs) if line.endswith("/configure-ccache.sh")]
    assert runs[configure] == (f"WORKER_USER={row.spec.user} WRAPPER_DIR={wrappers} CACHE_DIR=/ccache MAX_SIZE=5G "
                               "/opt/fleetbake/provision/configure-ccache.sh")
    [packages_run] = [i for i, line in enumerate(runs) if "install-packages.sh" in line]
    [user_run] = [i for i, line in enumerate(runs) if line.endswith("/create-user.sh")]
    assert packages_run < user_run < configure  # ccache and every compiler are in, and the user who owns /ccache
    script = context[render.placed(row, "scripts/configure-ccache.sh")]
    assert script.executable and script.content.decode().endswith(
        (ROOT / "images" / "common" / "scripts" / "configure-ccache.sh").read_text().split("\n", 1)[1])
    assert render.placed(row, "fleetbake/") + "worker/ccache.py" in context
    runtime = families.plan(row).runtime
    assert dict(runtime.env)["FLEETBAKE_CCACHE_WRAPPERS"] == wrappers
    assert [line for line in runtime.instructions() if line.startswith("VOLUME")] == ['VOLUME ["/buildarea"]']


def test_the_windows_image_has_no_ccache(project):
    row = project.rows["windows-2022"]
    plan = families.plan(row)
    assert "ccache" not in " ".join(run.line(True) for layer in plan.layers for run in layer.runs).lower()
    assert "FLEETBAKE_CCACHE_WRAPPERS" not in dict(plan.runtime.env)
