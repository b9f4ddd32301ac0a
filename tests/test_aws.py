"""fleetbake/operate/aws.py against moto: zombie instances, pruning old AMIs, and the missing-credentials error."""

import datetime as dt
import os
import subprocess
import sys
import time

import pytest

from conftest import ROOT
from fleetbake.errors import FleetbakeError
from fleetbake.operate import aws


def test_zombies_are_found_by_tag_and_key_pair(moto):
    client = aws.ec2("us-east-1", endpoint=moto)
    client.create_key_pair(KeyName="latent-master")

    def launch(**kwargs):
        return client.run_instances(ImageId="ami-0debian1200000001", MinCount=1, MaxCount=1, **kwargs)["Instances"][0]["InstanceId"]

    tag = [{"ResourceType": "instance", "Tags": [{"Key": "fleetbake", "Value": "true"}, {"Key": "buildbot-worker", "Value": "w1"}]}]
    tagged = launch(TagSpecifications=tag)
    by_key = launch(KeyName="latent-master")
    unrelated = launch()
    later = dt.datetime.now(dt.timezone.utc) + dt.timedelta(hours=7)
    found = aws.zombies(client, "us-east-1", dt.timedelta(hours=6), {"fleetbake": "true"}, ["latent-master"], now=later)
    ids = {i.instance_id for i in found}
    assert {tagged, by_key} <= ids and unrelated not in ids
    assert not aws.zombies(client, "us-east-1", dt.timedelta(hours=6), {"fleetbake": "true"}, ["latent-master"])  # all young
    with_master = aws.zombies(client, "us-east-1", dt.timedelta(hours=6), {"fleetbake": "true"}, [], connected={"w1"}, now=later)
    assert tagged not in {i.instance_id for i in with_master}
    aws.terminate(client, "us-east-1", found)
    states = {r["Instances"][0]["InstanceId"]: r["Instances"][0]["State"]["Name"]
              for r in client.describe_instances(InstanceIds=[tagged, by_key])["Reservations"]}
    assert set(states.values()) <= {"terminated", "shutting-down"}


def test_prune_keeps_the_newest_and_deletes_snapshots(moto):
    client = aws.ec2("us-east-1", endpoint=moto)
    instance = client.run_instances(ImageId="ami-0debian1200000001", MinCount=1, MaxCount=1)["Instances"][0]["InstanceId"]
    made = []
    for number in range(4):
        image = client.create_image(InstanceId=instance, Name=f"fleetbake-debian-13-pydebug-{number}")["ImageId"]
        client.create_tags(Resources=[image], Tags=[{"Key": "fleetbake", "Value": "true"},
                                                    {"Key": "fleetbake-row", "Value": "debian-13"},
                                                    {"Key": "fleetbake-configuration", "Value": "pydebug"}])
        made.append(image)
        time.sleep(1.1)  # CreationDate has one-second resolution
    images = [i for i in aws.fleetbake_images(client, "us-east-1") if i.row == "debian-13/pydebug"]
    old = aws.prune_plan(images, keep=2)
    assert {i.image_id for i in old} == set(made[:2])
    snapshots = [s for i in old for s in i.snapshots]
    assert snapshots
    aws.deregister(client, "us-east-1", old)
    remaining = {i.image_id for i in aws.fleetbake_images(client, "us-east-1")}
    assert set(made[2:]) <= remaining and not set(made[:2]) & remaining
    left = {s["SnapshotId"] for s in client.describe_snapshots(OwnerIds=["self"])["Snapshots"]}
    assert not set(snapshots) & left
    with pytest.raises(FleetbakeError, match="--keep must be at least 1"):
        aws.prune_plan(images, keep=0)


def test_missing_credentials_are_a_clear_error(moto, tmp_path):
    env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
    env.update(AWS_EC2_METADATA_DISABLED="true", AWS_SHARED_CREDENTIALS_FILE=str(tmp_path / "none"),
               AWS_CONFIG_FILE=str(tmp_path / "none"), FLEETBAKE_EC2_ENDPOINT=moto)
    result = subprocess.run([sys.executable, "-m", "invoke", "aws-zombies"], cwd=ROOT, env=env,
                            capture_output=True, text=True, timeout=60, check=False)
    assert result.returncode == 1
    assert result.stderr.strip() == ("error: no AWS credentials: set AWS_PROFILE (or --profile), "
                                     "or AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY")


def test_the_zombie_sweep_is_a_dry_run_unless_told(moto, monkeypatch):
    monkeypatch.setenv("FLEETBAKE_EC2_ENDPOINT", moto)
    client = aws.ec2("us-east-1")
    tag = [{"ResourceType": "instance", "Tags": [{"Key": "fleetbake", "Value": "true"}]}]
    instance = client.run_instances(ImageId="ami-0debian1200000001", MinCount=1, MaxCount=1,
                                    TagSpecifications=tag)["Instances"][0]["InstanceId"]

    def state() -> str:
        return client.describe_instances(InstanceIds=[instance])["Reservations"][0]["Instances"][0]["State"]["Name"]

    lines = []
    found = aws.zombie_sweep("us-east-1", None, "0m", [], [], None, "buildbot-worker", False, log=lines.append)
    assert instance in {i.instance_id for i in found} and state() == "running"
    assert lines[-1].endswith("(dry run: --terminate ends them)")
    aws.zombie_sweep("us-east-1", None, "0m", [], [], None, "buildbot-worker", True, log=lines.append)
    assert state() in {"terminated", "shutting-down"} and lines[-1].startswith("terminated ")


def test_prune_keeps_the_newest_of_each_architecture(moto, monkeypatch):
    """An arm64 AMI of a row and configuration never counts against its amd64 ones (nor the reverse): the arch comes from
    the fleetbake-arch tag, or, for AMIs made before it, from EC2's own Architecture."""
    monkeypatch.setenv("FLEETBAKE_EC2_ENDPOINT", moto)
    client = aws.ec2("us-east-1")

    def instance(image: str) -> str:
        return client.run_instances(ImageId=image, MinCount=1, MaxCount=1)["Instances"][0]["InstanceId"]

    amd64, arm64 = instance("ami-0debian1200000001"), instance("ami-0decoy0000000000b")  # x86_64, arm64
    made = []
    for number, (source, arch_tag) in enumerate([(amd64, "amd64"), (arm64, "arm64"), (amd64, None), (arm64, "arm64"),
                                                 (arm64, None)]):
        image = client.create_image(InstanceId=source, Name=f"fleetbake-debian-12-release-{number}")["ImageId"]
        tags = [{"Key": "fleetbake", "Value": "true"}, {"Key": "fleetbake-row", "Value": "debian-12"},
                {"Key": "fleetbake-configuration", "Value": "release"}]
        client.create_tags(Resources=[image], Tags=tags + ([{"Key": "fleetbake-arch", "Value": arch_tag}] if arch_tag else []))
        made.append(image)
        time.sleep(1.1)  # CreationDate has one-second resolution
    images = [i for i in aws.fleetbake_images(client, "us-east-1") if i.row == "debian-12/release"]
    assert {i.image_id: i.arch for i in images} == dict(zip(made, ["amd64", "arm64", "amd64", "arm64", "arm64"]))
    old = aws.prune_plan(images, keep=1)
    assert [(i.image_id, i.arch) for i in old] == [(made[0], "amd64"), (made[1], "arm64"), (made[3], "arm64")]
    lines = []  # the dry run's listing says each AMI's architecture
    swept = aws.ami_sweep("us-east-1", None, 1, False, log=lines.append)
    assert {i.image_id for i in old} <= {i.image_id for i in swept}
    assert f"{made[1]}  debian-12/release         arm64    " in "\n".join(lines)
