"""fleetbake/pipeline/families.py: each family's plan is the one declaration the Dockerfile and every Packer target run."""

import json
import re

import hcl2
import pytest

from fleetbake.pipeline import families, packer, render
from test_packer import provisioners


@pytest.mark.parametrize("row", ["debian-12", "fedora-44"])
def test_the_dockerfile_and_every_packer_target_run_one_plan(project, row):
    """families.py declares the steps once: the Dockerfile's RUNs and each target's shell steps are the same lines,
    in the same order, and the docker target's `changes` are the Dockerfile's runtime instructions."""
    row = project.rows[row]
    plan = families.plan(row)
    dockerfile = render.render_row(project, row)["Dockerfile"].content.decode()
    runs = [run.line() for layer in plan.layers for run in layer.runs]
    assert [line.strip() for line in re.findall(r"^(?:RUN | && )(.+?)(?: \\)?$", dockerfile, re.MULTILINE)] == runs
    for instruction in plan.runtime.instructions():
        assert instruction.split(" ", 1)[0] in dockerfile
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
                "BUILDBOT_WORKER_VERSION=4.3.0 WORKER_PIP_EXTRAS=boto3 /opt/fleetbake/provision/install-worker.sh"]


def test_runtime_instructions_are_what_docker_commit_takes():
    """No STOPSIGNAL: Docker 20.10's `docker commit --change` (Packer's docker builder) refuses it; SIGTERM is the default."""
    assert not any(line.startswith("STOPSIGNAL") for line in families.Runtime(
        env=(("A", "b c"),), volume="/v", workdir="/v", cmd=("x",), entrypoint=("y",),
        healthcheck=families.Healthcheck(("--interval=1s",), ("z",))).instructions())
    assert families.quote_word("plain-1.2:3/x") == "plain-1.2:3/x"
    assert families.quote_word('say "hi" $HOME') == '"say \\"hi\\" \\$HOME"'
