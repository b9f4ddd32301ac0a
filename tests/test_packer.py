"""Packer templates from the matrix: valid on Debian's Packer 1.6.6, and the AMI flow against moto."""

import datetime as dt
import json
import os
import re
import subprocess
import sys
import time

import hcl2
import pytest

from conftest import AWS_ENV, ROOT, MotoServer
from fleetbake import aws, matrix, packer, render
from fleetbake.errors import FleetbakeError

CASES = [("debian-12", "docker"), ("debian-12", "ami"), ("debian-12", "ami-rehearsal"), ("debian-13", "docker"),
         ("debian-13", "ami"), ("windows-2022", "ami")]


@pytest.fixture(scope="module")
def project():
    return matrix.load(ROOT / "matrix.yml")


@pytest.fixture(scope="module")
def out(tmp_path_factory):
    directory = tmp_path_factory.mktemp("build")
    previous = os.environ.get("FLEETBAKE_BUILD_DIR")
    os.environ["FLEETBAKE_BUILD_DIR"] = str(directory)
    yield directory
    if previous is None:
        del os.environ["FLEETBAKE_BUILD_DIR"]
    else:
        os.environ["FLEETBAKE_BUILD_DIR"] = previous


@pytest.mark.parametrize("row, target", CASES)
def test_templates_validate_on_packer_1_6_6_and_are_formatted(project, out, row, target):
    template = packer.write(project, project.rows[row], target, log=lambda _: None)
    packer.validate(template)
    packer.fmt_check(template)
    data = hcl2.loads(template.read_text())
    assert data["build"][0]["name"] == '"fleetbake"'
    assert "required_plugins" not in template.read_text()
    plugins = hcl2.loads((template.parent / "plugins.pkr.hcl").read_text())
    assert "required_plugins" in plugins["packer"][0]


# Modern Packer and its plugins cannot be installed here: check every argument we write against
# the names the plugins' generated HCL2 specs accept (provenance in the fixture).
MODERN = json.loads((ROOT / "tests" / "fixtures" / "packer_modern_schema.json").read_text())
CORE_META = {"only", "except", "pause_before", "max_retries", "timeout", "override", "name", "keep_input_artifact"}


def unknown_arguments(body: dict, schema: dict, where: str) -> list[str]:
    problems = []
    for key, value in body.items():
        if key == "__is_block__" or key in CORE_META:
            continue
        if key in schema["blocks"]:
            for item in value if isinstance(value, list) else [value]:
                problems += unknown_arguments(item, schema["blocks"][key], f"{where}.{key}")
        elif key not in schema["attributes"]:
            problems.append(f"{where}.{key}")
    return problems


def template_arguments(data: dict) -> list[tuple[str, str, dict]]:
    """(kind, type, body) for every source, provisioner and post-processor of a parsed template."""
    found = [("source", kind.strip('"'), body) for source in data["source"]
             for kind, named in source.items() for body in named.values()]
    for build in data["build"]:
        for kind in ("provisioner", "post-processor"):
            found += [(kind, name.strip('"'), body) for item in build.get(kind, []) for name, body in item.items()]
    return found


@pytest.mark.parametrize("row, target", CASES)
def test_every_argument_is_one_the_modern_plugins_accept(project, out, row, target):
    template = packer.write(project, project.rows[row], target, log=lambda _: None)
    problems = []
    for kind, type_, body in template_arguments(hcl2.loads(template.read_text())):
        assert type_ in MODERN[kind], f"{kind} {type_} is not in the fixture"
        problems += unknown_arguments(body, MODERN[kind][type_], f"{kind}.{type_}")
    assert problems == []
    # The check itself bites: a misspelt or retired argument is reported.
    assert unknown_arguments({"volume_typ": "gp3"}, MODERN["source"]["amazon-ebs"], "source") == ["source.volume_typ"]
    assert unknown_arguments({"launch_block_device_mappings": [{"iop": 1}]}, MODERN["source"]["amazon-ebs"], "s") == [
        "s.launch_block_device_mappings.iop"]


def test_packer_1_6_6_rejects_required_plugins_so_it_lives_apart(project, out):
    template = packer.write(project, project.rows["debian-12"], "docker", log=lambda _: None)
    with pytest.raises(packer.PackerError):
        packer._packer(["validate", "."], cwd=template.parent)  # the whole folder, plugins.pkr.hcl included


def test_a_broken_template_fails_validation(project, out):
    template = packer.write(project, project.rows["debian-12"], "docker", log=lambda _: None)
    broken = template.with_name("broken.pkr.hcl")
    broken.write_text(template.read_text().replace("source.docker.worker", "source.docker.nothing"))
    with pytest.raises(packer.PackerError, match="validate failed"):
        packer.validate(broken)


def test_provisioning_uses_the_dockerfiles_scripts_and_package_list(project, out):
    row = project.rows["debian-12"]
    template = packer.write(project, row, "docker", log=lambda _: None)
    context = render.render_row(project, row, render.ca_certs_from(None))
    for name, item in context.items():
        if name.startswith("scripts/") or name == "packages.txt":
            assert (template.parent / name).read_bytes() == item.content, name
    text = template.read_text()
    assert "libssl-dev" not in text, "the package list lives in packages.txt only"
    for script in ("configure-apt.sh", "install-packages.sh", "install-ca.sh", "create-user.sh", "install-worker.sh"):
        assert f"/opt/fleetbake/provision/{script}" in text
    assert re.search(r"pull += false", text) and "ENTRYPOINT" in text


def test_ami_template_settings(project, out):
    row = project.rows["debian-12"]
    text = packer.write(project, row, "ami", "pydebug", log=lambda _: None).read_text()
    data = hcl2.loads(text)
    sources = {next(iter(s[k])).strip('"'): s[k] for s in data["source"] for k in s}
    worker = next(iter(sources["worker"].values()))
    disk = worker["launch_block_device_mappings"][0]
    assert (disk["volume_type"], disk["volume_size"], disk["iops"], disk["throughput"]) == ('"gp3"', 30, 3000, 125)
    assert worker["source_ami_filter"][0]["owners"] == ['"136693071363"']
    assert "timestamp()" in worker["ami_name"] and "fleetbake-debian-12-pydebug-" in worker["ami_name"]
    variables = {next(iter(v)).strip('"'): next(iter(v.values())) for v in data["variable"]}
    assert variables["instance_type"]["default"] == f'"{row.spec.ami.instance_type}"'
    assert "fleetbake-inputs-hash" in text and "fleetbake-row" in text and "fleetbake-date" in text
    for secret_word in ("access_key", "secret_key", "WORKERPASS="):
        assert secret_word not in text


@pytest.fixture(scope="module")
def moto(tmp_path_factory):
    amis = tmp_path_factory.mktemp("moto") / "amis.json"
    debian = {
        "ami_id": "ami-0debian1200000001", "name": "debian-12-amd64-20261101-2000", "description": "Debian 12",
        "owner_id": "136693071363", "public": True, "virtualization_type": "hvm", "architecture": "x86_64",
        "state": "available", "platform": None, "image_type": "machine", "image_location": "debian-12",
        "sriov": "simple", "root_device_type": "ebs", "root_device_name": "/dev/xvda", "hypervisor": "xen"}
    # Near misses the source_ami_filter must pass over: another owner, another architecture, another release.
    decoys = [{**debian, "ami_id": "ami-0decoy0000000000a", "owner_id": "999999999999"},
              {**debian, "ami_id": "ami-0decoy0000000000b", "name": "debian-12-arm64-20261101-2000", "architecture": "arm64"},
              {**debian, "ami_id": "ami-0decoy0000000000c", "name": "debian-11-amd64-20261101-2000"}]
    windows = {**debian, "ami_id": "ami-0windows200000001", "name": "Windows_Server-2022-English-Full-Base-2026.11.12",
               "owner_id": "801119661308", "platform": "windows", "root_device_name": "/dev/sda1"}
    amis.write_text(json.dumps([*decoys, debian, windows]))
    server = MotoServer({"MOTO_AMIS_PATH": str(amis)})
    saved = {k: os.environ.get(k) for k in AWS_ENV}
    os.environ.update(AWS_ENV)
    yield server.endpoint
    for key, value in saved.items():
        if value is None:
            os.environ.pop(key, None)
        else:
            os.environ[key] = value
    server.stop()


def test_ami_builds_end_to_end_against_moto_and_hands_off(project, out, moto):
    row = project.rows["debian-12"]
    template = packer.write(project, row, "ami", "pydebug", log=lambda _: None)
    log = []
    packer.build(template, "fleetbake.amazon-ebs.bare", {"ec2_endpoint": moto, "inputs_hash": "abc123"}, log=log.append)
    assert any("AMIs were created" in line for line in log)
    assert [line.split()[-1] for line in log if "Found Image ID" in line] == ["ami-0debian1200000001"]
    info = packer.handoff(template.parent, row, "us-east-1")
    assert info["instance_type"] == "m5.large" and info["region"] == "us-east-1" and info["ami_id"].startswith("ami-")
    assert json.loads((template.parent / "handoff.json").read_text()) == info
    client = aws.ec2("us-east-1", endpoint=moto)
    [image] = client.describe_images(ImageIds=[info["ami_id"]])["Images"]
    tags = {t["Key"]: t["Value"] for t in image["Tags"]}
    assert tags["fleetbake-row"] == "debian-12" and tags["fleetbake-configuration"] == "pydebug"
    assert tags["fleetbake-inputs-hash"] == "abc123" and tags["fleetbake-date"] == dt.date.today().isoformat()
    assert image["Name"].startswith("fleetbake-debian-12-pydebug-20")
    assert not client.describe_instances(Filters=[{"Name": "instance-state-name", "Values": ["running"]},
                                                  {"Name": "tag:fleetbake-row", "Values": ["debian-12"]}])["Reservations"]


def test_windows_ami_builds_against_moto_and_hands_off(project, out, moto):
    row = project.rows["windows-2022"]
    template = packer.write(project, row, "ami", log=lambda _: None)
    assert packer.provisioned_source(row, "ami") == "fleetbake.amazon-ebs.windows"
    log = []
    packer.build(template, "fleetbake.amazon-ebs.bare", {"ec2_endpoint": moto}, log=log.append)
    assert [line.split()[-1] for line in log if "Found Image ID" in line] == ["ami-0windows200000001"]
    info = packer.handoff(template.parent, row, "us-east-1")
    assert info["instance_type"] == "m5.xlarge" and info["ami_id"].startswith("ami-")
    [image] = aws.ec2("us-east-1", endpoint=moto).describe_images(ImageIds=[info["ami_id"]])["Images"]
    assert image["Name"].startswith("fleetbake-windows-2022-pydebug-20")
    disk = re.search(r'launch_block_device_mappings \{[^}]*device_name += "/dev/sda1"[^}]*volume_size += (\d+)',
                     template.read_text())
    assert disk and disk.group(1) == "60"  # moto does not size the volumes it snapshots


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


def load_worker_config():
    import importlib.machinery
    import importlib.util

    path = ROOT / "images" / "ami" / "fleetbake-worker-config"
    loader = importlib.machinery.SourceFileLoader("fleetbake_worker_config", str(path))
    spec = importlib.util.spec_from_loader(loader.name, loader)
    module = importlib.util.module_from_spec(spec)
    loader.exec_module(module)
    return module


def test_ami_boot_config_reads_user_data_and_ssm(moto, tmp_path, monkeypatch):
    config = load_worker_config()
    settings, password = config.parse("WORKERNAME=w1\r\nWORKERPASS=pw\nBUILDMASTER=m:9020\n")
    assert settings == {"WORKERNAME": "w1", "BUILDMASTER": "m:9020"} and password == "pw"
    import boto3

    boto3.client("ssm", region_name="us-east-1", endpoint_url=moto).put_parameter(
        Name="/fleet/w2", Value="from-ssm", Type="SecureString")
    monkeypatch.setenv("FLEETBAKE_SSM_ENDPOINT", moto)
    settings, password = config.parse("WORKERNAME=w2\nWORKERPASS_SSM=/fleet/w2\n", "us-east-1")
    assert password == "from-ssm" and "WORKERPASS_SSM" not in settings
    config.write(settings, password, str(tmp_path))
    assert (tmp_path / "workerpass").stat().st_mode & 0o777 == 0o400
    assert "from-ssm" not in (tmp_path / "env").read_text()
    with pytest.raises(ValueError, match="WORKERNAME= and WORKERPASS="):
        config.parse("BUILDMASTER=m\n")


def test_ami_boot_config_retries_imds_but_not_bad_user_data(monkeypatch, capsys):
    config = load_worker_config()
    calls = []

    def unreachable(path):
        calls.append(path)
        raise OSError("connection refused")

    monkeypatch.setattr(config, "imds", unreachable)
    assert config.main(attempts=3, pause=0) == 1
    assert len(calls) == 3 and "attempt 3/3: connection refused" in capsys.readouterr().err
    calls.clear()
    monkeypatch.setattr(config, "imds", lambda path: calls.append(path) or ("us-east-1" if "region" in path else "X=1\n"))
    assert config.main(attempts=3, pause=0) == 1
    assert len(calls) == 2, "incomplete user data is final: no retry"
    assert "needs WORKERNAME=" in capsys.readouterr().err


@pytest.mark.parametrize("row, target, reason", [("windows-2022", "docker", "has an AMI target only"),
                                                 ("windows-2022", "ami-rehearsal", "has an AMI target only"),
                                                 ("debian-12", "vagrant", "expected one of docker, ami, ami-rehearsal")])
def test_targets_a_row_cannot_have_are_usage_errors(project, out, row, target, reason):
    from fleetbake.errors import UsageError

    with pytest.raises(UsageError, match=reason):
        packer.write(project, project.rows[row], target, log=lambda _: None)
