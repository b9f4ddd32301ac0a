"""Packer templates from the matrix: valid on Debian's Packer 1.6.6, and the AMI flow against moto."""

import functools
import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path

import hcl2
import pytest

from conftest import AWS_ENV, FIXTURE_MATRIX, MINIMAL, ROOT
from fleetbake.errors import UsageError
from fleetbake.pipeline import arches, families, matrix, packer, render

# debian-12's AMI per architecture, as in the live matrix; debian-13 keeps the flat form (amd64's alone).
AMI_PER_ARCH = """    ami:
      source_ami_owner: "136693071363"
      volume_gb: 30
      arches:
        amd64: {instance_type: m5.large, source_ami_name: debian-12-amd64-*}
        arm64: {instance_type: m7g.large, source_ami_name: debian-12-arm64-*}
"""
FLAT_AMI = '    ami: {instance_type: m5.large, source_ami_name: debian-12-amd64-*, source_ami_owner: "136693071363", volume_gb: 30}\n'


@pytest.fixture(scope="module")
def project(tmp_path_factory):
    """The unit tests' matrix (conftest's), debian-12's AMI given per architecture (amd64 and arm64)."""
    copy = tmp_path_factory.mktemp("project") / "matrix.yml"
    copy.write_text(FIXTURE_MATRIX.read_text().replace(FLAT_AMI, AMI_PER_ARCH))
    loaded = matrix.load(copy)
    assert list(loaded.rows["debian-12"].spec.ami.builds) == ["amd64", "arm64"]
    assert list(loaded.rows["debian-13"].spec.ami.builds) == ["amd64"] and loaded.rows["debian-13"].spec.ami.arches == {}
    return loaded


CASES = [("debian-12", "docker"), ("debian-12", "ami"), ("debian-12", "ami-rehearsal"), ("debian-13", "docker"),
         ("debian-13", "ami"), ("windows-2022", "ami")]


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


def resolve(template: Path, value: str) -> Path:
    """A template path such as "${path.root}/${var.context}/", with the variables' defaults."""
    variables = {next(iter(v)).strip('"'): next(iter(v.values()))["default"].strip('"')
                 for v in hcl2.loads(template.read_text())["variable"]}
    text = value.strip('"').replace("${path.root}", str(template.parent))
    return Path(re.sub(r"\$\{var\.(\w+)\}", lambda m: variables[m.group(1)], text)).resolve()


def provisioners(template: Path) -> list[tuple[str, dict]]:
    build = hcl2.loads(template.read_text())["build"][0]
    return [(kind.strip('"'), body) for item in build["provisioner"] for kind, body in item.items()]


def test_provisioning_uploads_the_rows_generated_context_and_runs_the_plan(project, out):
    row = project.rows["debian-12"]
    template = packer.write(project, row, "docker", log=lambda _: None)
    [upload] = [body for kind, body in provisioners(template) if kind == "file"]
    folder = resolve(template, upload["source"])
    assert folder == project.path.parent / "images" / "debian" / "debian-12"  # what `docker build` alone reads
    context = render.render_row(project, row)
    assert all((folder / name).read_bytes() == item.content for name, item in context.items())
    text = template.read_text()
    assert "libssl-dev" not in text, "the package list lives in packages.txt only"
    for script in ("configure-apt.sh", "install-packages.sh", "install-ca.sh", "create-user.sh", "install-worker.sh"):
        assert f"/opt/fleetbake/provision/{script}" in text
    assert re.search(r"pull += false", text) and "ENTRYPOINT" in text


def ami_sources(data: dict) -> dict[str, dict]:
    """name -> body of every amazon-ebs source of a parsed template."""
    return {name.strip('"'): body for source in data["source"] for name, body in source['"amazon-ebs"'].items()}


def test_ami_template_settings(project, out):
    row = project.rows["debian-12"]
    text = packer.write(project, row, "ami", "pydebug", log=lambda _: None).read_text()
    data = hcl2.loads(text)
    sources = ami_sources(data)
    assert list(sources) == ["worker-amd64", "worker-arm64"]
    variables = {next(iter(v)).strip('"'): next(iter(v.values())) for v in data["variable"]}
    assert variables["configuration"]["default"] == f'"{next(iter(row.configurations))}"'  # invoke passes --config
    for arch, instance_type, ec2, name in (("amd64", "m5.large", "x86_64", "debian-12-amd64-*"),
                                          ("arm64", "m7g.large", "arm64", "debian-12-arm64-*")):
        worker = sources[f"worker-{arch}"]
        disk = worker["launch_block_device_mappings"][0]
        assert (disk["volume_type"], disk["volume_size"], disk["iops"], disk["throughput"]) == ('"gp3"', 30, 3000, 125)
        [found] = worker["source_ami_filter"]
        assert found["owners"] == ['"136693071363"']  # Debian's
        assert found["filters"] == {'"name"': f'"{name}"', '"architecture"': f'"{ec2}"',
                                    '"virtualization-type"': '"hvm"', '"root-device-type"': '"ebs"'}
        assert ec2 == arches.get(arch).ec2
        assert worker["instance_type"] == f"${{var.instance_type_{arch}}}"
        assert variables[f"instance_type_{arch}"]["default"] == f'"{instance_type}"'
        assert "timestamp()" in worker["ami_name"] and f"fleetbake-debian-12-{arch}-${{var.configuration}}-" in worker["ami_name"]
        assert worker["tags"]['"fleetbake-arch"'] == f'"{arch}"' and worker["run_tags"]['"fleetbake-arch"'] == f'"{arch}"'
        assert worker["tags"]['"Name"'] == f'"fleetbake-debian-12-{arch}-${{var.configuration}}"'
        assert worker["tags"]['"fleetbake-inputs-hash"'] == f"${{var.inputs_hash_{arch}}}"
    # Both sources get the same provisioners: the build block names both, its provisioners are the one list.
    [build] = data["build"]
    assert build["sources"] == ['"source.amazon-ebs.worker-amd64"', '"source.amazon-ebs.worker-arm64"']
    assert "fleetbake-inputs-hash" in text and "fleetbake-row" in text and "fleetbake-date" in text
    for secret_word in ("access_key", "secret_key", "WORKERPASS="):
        assert secret_word not in text
    # The flat form is amd64's alone.
    flat = ami_sources(hcl2.loads(packer.write(project, project.rows["debian-13"], "ami", log=lambda _: None).read_text()))
    assert list(flat) == ["worker-amd64"] and flat["worker-amd64"]["source_ami_filter"][0]["filters"]['"architecture"'] == '"x86_64"'


@pytest.mark.parametrize("row", ["debian-12", "debian-13", "windows-2022"])
def test_the_committed_ami_templates_validate_and_build_each_arch_alike(live_project, row):
    """packer/<row>/ami/ as committed, on the real Packer 1.6.6: one source per architecture of the live matrix's
    AMI, the filter and instance type of each, the same provisioners for all."""
    view = live_project.rows[row]
    template = packer.committed(live_project, view, "ami")
    packer.validate(template)
    data = hcl2.loads(template.read_text())
    sources = ami_sources(data)
    builds = view.spec.ami.builds
    assert list(builds) == (["amd64", "arm64"] if row.startswith("debian-") else ["amd64"])
    name = "windows" if row.startswith("windows") else "worker"
    assert list(sources) == [f"{name}-{arch}" for arch in builds]
    variables = {next(iter(v)).strip('"'): next(iter(v.values())) for v in data["variable"]}
    for arch, build in builds.items():
        filters = sources[f"{name}-{arch}"]["source_ami_filter"][0]["filters"]
        assert (filters['"name"'], filters['"architecture"']) == (f'"{build.source_ami_name}"', f'"{arches.get(arch).ec2}"')
        assert variables[f"instance_type_{arch}"]["default"] == f'"{build.instance_type}"'
    if row.startswith("debian-"):
        assert builds["arm64"].instance_type.startswith("m7g.")  # Graviton
        assert builds["arm64"].source_ami_name == f"{row}-arm64-*"
    [build] = data["build"]
    assert build["sources"] == [f'"source.amazon-ebs.{name}-{arch}"' for arch in builds]
    assert "only" not in json.dumps(build["provisioner"])  # no provisioner is kept to one source


def test_the_arch_chooses_the_sources_packer_builds(project, out):
    row = project.rows["debian-12"]
    both = ["fleetbake.amazon-ebs.worker-amd64", "fleetbake.amazon-ebs.worker-arm64"]
    assert packer.provisioned_sources(row, "ami") == both == packer.provisioned_sources(row, "ami", "all")
    assert packer.provisioned_sources(row, "ami", "arm64") == ["fleetbake.amazon-ebs.worker-arm64"]
    assert packer.provisioned_sources(project.rows["debian-13"], "ami") == ["fleetbake.amazon-ebs.worker-amd64"]
    assert packer.provisioned_sources(row, "docker") == []
    with pytest.raises(UsageError, match=r"^--arch ppc64le: debian-12's AMI is built for amd64, arm64 .*EC2 has no ppc64le"):
        packer.write(project, row, "ami", arch="ppc64le", log=lambda _: None)
    with pytest.raises(UsageError, match=r"^--arch arm64: debian-13's AMI is built for amd64 \(matrix.yml rows.debian-13.ami\)$"):
        packer.write(project, project.rows["debian-13"], "ami", arch="arm64", log=lambda _: None)
    foreign = next(name for name in ("arm64", "amd64") if name != arches.native().name)
    with pytest.raises(UsageError, match=f"^--arch {foreign}: --target docker builds this host's architecture"):
        packer.write(project, row, "docker", arch=foreign, log=lambda _: None)
    assert packer.write(project, row, "docker", arch=arches.native().name, log=lambda _: None).is_file()


def _loopback_up() -> None:
    """ioctl(SIOCSIFFLAGS, IFF_UP) on lo: a fresh network namespace has it down."""
    import fcntl
    import socket
    import struct

    with socket.socket() as sock:
        request = struct.pack("16sH", b"lo", 0)
        flags = struct.unpack("16sH", fcntl.ioctl(sock, 0x8913, request)[:18])[1]  # SIOCGIFFLAGS
        fcntl.ioctl(sock, 0x8914, struct.pack("16sH", b"lo", flags | 1))  # SIOCSIFFLAGS


def _moto_windows_password_as_aws_makes_it() -> None:
    """AWS encrypts a Windows instance's Administrator password with its key pair's public key
    (RSA, PKCS#1 v1.5, base64); moto returns random text, which Packer rightly cannot decrypt."""
    import base64

    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import padding
    from moto.ec2.models.windows import WindowsBackend

    def get_password_data(self, instance_id: str) -> str:
        instance = self.get_instance(instance_id)
        if instance.platform != "windows":
            return ""
        key = serialization.load_pem_private_key(self.key_pairs[instance.key_name].material, None)
        return base64.b64encode(key.public_key().encrypt(b"moto-administrator-password", padding.PKCS1v15())).decode()

    WindowsBackend.get_password_data = get_password_data


def _recorded_requests(path: Path) -> list[dict[str, str]]:
    """The EC2 API calls Packer made, as moto's recorder wrote them (form-encoded query API)."""
    import base64
    from urllib.parse import parse_qsl

    calls = []
    for line in (path.read_text() if path.exists() else "").splitlines():  # no file: Packer called nothing
        entry = json.loads(line)
        body = base64.b64decode(entry["body"]).decode() if entry["body_encoded"] else (entry["body"] or "")
        calls.append(dict(parse_qsl(body)))
    return [call for call in calls if "Action" in call]


def _run_in_netns(spec_path: str) -> None:
    """Inside `unshare --net` (network_namespace): moto and Packer alone on a loopback-only network. The instances moto
    "launches" get made-up addresses, which here are unreachable: nothing leaves the machine."""
    spec = json.loads(Path(spec_path).read_text())
    _loopback_up()
    recording = Path(spec["out"]).with_suffix(".requests")
    os.environ.update(AWS_ENV, MOTO_AMIS_PATH=spec["amis"], MOTO_ENABLE_RECORDING="true",
                      MOTO_RECORDER_FILEPATH=str(recording))
    import boto3
    from moto.server import ThreadedMotoServer

    from conftest import free_port

    _moto_windows_password_as_aws_makes_it()
    port = free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    endpoint = f"http://127.0.0.1:{port}"
    log, error = [], None
    started = time.monotonic()
    try:
        packer.build(Path(spec["template"]), spec["only"], {**spec["variables"], "ec2_endpoint": endpoint}, log=log.append)
    except packer.PackerError as exc:
        error = str(exc)
    import urllib.request

    urllib.request.urlopen(urllib.request.Request(f"{endpoint}/moto-api/recorder/stop-recording", method="POST"))
    client = boto3.client("ec2", region_name="us-east-1", endpoint_url=endpoint)  # what Packer left behind
    state = {"instances": [i for r in client.describe_instances()["Reservations"] for i in r["Instances"]],
             "key_pairs": [k["KeyName"] for k in client.describe_key_pairs()["KeyPairs"]],
             "security_groups": [g["GroupName"] for g in client.describe_security_groups()["SecurityGroups"]],
             "images": [i["ImageId"] for i in client.describe_images(Owners=["self"])["Images"]]}
    server.stop()
    result = {"log": log, "error": error, "seconds": time.monotonic() - started,
              "requests": _recorded_requests(recording), "state": state}
    Path(spec["out"]).write_text(json.dumps(result, default=str))


LOOPBACK_ONLY = "--loopback-only"  # this file's probe: bring lo up, print the interfaces it sees


@functools.cache
def network_namespace() -> tuple[list[str] | None, str]:
    """The command prefix that runs a process in a network namespace of its own here, and how it gets one; or None
    and why not. Root: `unshare --net`. Another user needs a user namespace of its own (--map-root-user): Debian
    allows one; Ubuntu 24.04's AppArmor refuses it while kernel.apparmor_restrict_unprivileged_userns=1."""
    root = os.geteuid() == 0
    prefix = ["unshare", "--net"] if root else ["unshare", "--net", "--map-root-user"]
    probe = subprocess.run([*prefix, sys.executable, __file__, LOOPBACK_ONLY], capture_output=True, text=True,
                           timeout=120, check=False, env={**os.environ, "PYTHONPATH": str(ROOT)})
    if probe.returncode == 0 and probe.stdout.strip() == '["lo"]':
        return prefix, "root" if root else "a user namespace"
    said = (probe.stderr.strip().splitlines() or [f"it saw {probe.stdout.strip()}"])[-1]
    if root:
        return None, f"`unshare --net` gave no loopback-only network as root ({said})"
    return None, (f"unshare --net needs root or a user namespace: this user (uid {os.geteuid()}) is not root, and "
                  f"`{' '.join(prefix)}` failed here ({said})")


def test_the_network_namespace_is_loopback_only_or_the_reason_is_true():
    """What build_against_moto runs in has no interface but lo. Where there is none, the skip's reason is this
    machine's."""
    prefix, how = network_namespace()
    if prefix is None:
        assert os.geteuid() != 0, how  # root always gets one: a failure there is a failure, not a skip
        refused = subprocess.run(["unshare", "--net", "--map-root-user", "true"], capture_output=True, check=False)
        assert refused.returncode != 0, "a user namespace works here, yet the detection said none"
        return
    assert how == ("root" if os.geteuid() == 0 else "a user namespace")
    seen = subprocess.run([*prefix, sys.executable, "-c", "import socket; print([n for _, n in socket.if_nameindex()])"],
                          capture_output=True, text=True, timeout=60, check=True).stdout
    assert seen.strip() == "['lo']"  # nothing but loopback: no route out of the machine


def build_against_moto(template: Path, only: str, variables: dict[str, str], amis: Path) -> dict:
    """`packer build` of the real template, as `invoke packer --build` runs it, against moto."""
    prefix, how = network_namespace()
    assert prefix is not None or os.geteuid() != 0, how  # root always gets one: no skip there
    if prefix is None:  # still checked where it can be: as root (.ci/run), and in CI's unit job (restriction lifted)
        pytest.skip(how)
    spec = template.parent / "netns-spec.json"
    out = template.parent / "netns-result.json"
    spec.write_text(json.dumps({"template": str(template), "only": only, "variables": variables,
                                "amis": str(amis), "out": str(out)}))
    result = subprocess.run([*prefix, sys.executable, __file__, str(spec)], capture_output=True, text=True,
                            timeout=300, check=False, env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert result.returncode == 0, result.stderr[-3000:]
    return json.loads(out.read_text())


def calls(result: dict, action: str) -> list[dict[str, str]]:
    return [call for call in result["requests"] if call["Action"] == action]


def debian_amis(path: Path) -> Path:
    """moto's AMIs for an amd64 and an arm64 build: Debian 12's of each architecture, and near misses on each side
    (another owner; an arm64 image under an amd64 name and the reverse; another release)."""
    debian = {
        "ami_id": "ami-0debian12amd64001", "name": "debian-12-amd64-20261101-2000", "description": "Debian 12",
        "owner_id": "136693071363", "public": True, "virtualization_type": "hvm", "architecture": "x86_64",
        "state": "available", "platform": None, "image_type": "machine", "image_location": "debian-12",
        "sriov": "simple", "root_device_type": "ebs", "root_device_name": "/dev/xvda", "hypervisor": "xen"}
    arm = {**debian, "ami_id": "ami-0debian12arm64001", "name": "debian-12-arm64-20261101-2000", "architecture": "arm64"}
    decoys = [{**debian, "ami_id": "ami-0decoy0000000000a", "owner_id": "999999999999"},
              {**arm, "ami_id": "ami-0decoy0000000000b", "owner_id": "999999999999"},
              {**debian, "ami_id": "ami-0decoy0000000000c", "architecture": "arm64"},
              {**arm, "ami_id": "ami-0decoy0000000000d", "architecture": "x86_64"},
              {**arm, "ami_id": "ami-0decoy0000000000e", "name": "debian-11-arm64-20261101-2000"}]
    path.write_text(json.dumps([*decoys, debian, arm]))
    return path


def test_linux_ami_build_of_each_arch_gets_as_far_as_ssh_against_moto(project, out, tmp_path):
    row = project.rows["debian-12"]
    template = packer.write(project, row, "ami", "pydebug", log=lambda _: None)
    only = packer.provisioned_sources(row, "ami")  # the very selection `invoke packer --build` passes: both
    variables = {"inputs_hash_amd64": "abc123", "inputs_hash_arm64": "def456", "ssh_timeout": "15s"}
    result = build_against_moto(template, only, variables, debian_amis(tmp_path / "amis.json"))
    log = "\n".join(result["log"])
    # Both builds ran (-only matched each source) and each source AMI filter passed over every decoy.
    assert "fleetbake.amazon-ebs.worker-amd64: Found Image ID: ami-0debian12amd64001" in log
    assert "fleetbake.amazon-ebs.worker-arm64: Found Image ID: ami-0debian12arm64001" in log
    lookups = [call for call in calls(result, "DescribeImages") if "Owner.1" in call]
    filters = sorted(({lookup[f"Filter.{n}.Name"]: lookup[f"Filter.{n}.Value.1"] for n in range(1, 5)}
                      for lookup in lookups), key=lambda f: f["name"])
    assert {lookup["Owner.1"] for lookup in lookups} == {"136693071363"} and filters == [
        {"name": f"debian-12-{arch}-*", "architecture": ec2, "virtualization-type": "hvm", "root-device-type": "ebs"}
        for arch, ec2 in (("amd64", "x86_64"), ("arm64", "arm64"))]
    keys = calls(result, "CreateKeyPair")
    groups = calls(result, "CreateSecurityGroup")
    assert len(keys) == len(groups) == 2
    assert [c["IpPermissions.1.FromPort"] for c in calls(result, "AuthorizeSecurityGroupIngress")] == ["22", "22"]
    launches = {launch["ImageId"]: launch for launch in calls(result, "RunInstances")}
    assert {image: launch["InstanceType"] for image, launch in launches.items()} == {
        "ami-0debian12amd64001": "m5.large", "ami-0debian12arm64001": "m7g.large"}
    assert {launch["KeyName"] for launch in launches.values()} == {key["KeyName"] for key in keys}
    for launch in launches.values():
        disk = {k.removeprefix("BlockDeviceMapping.1."): v for k, v in launch.items() if k.startswith("BlockDeviceMapping.1.")}
        assert disk == {"DeviceName": "/dev/xvda", "Ebs.VolumeSize": "30", "Ebs.VolumeType": "gp3", "Ebs.Iops": "3000",
                        "Ebs.Throughput": "125", "Ebs.DeleteOnTermination": "true"}
    instances = {i["ImageId"]: i for i in result["state"]["instances"]}
    assert len(instances) == 2
    for image, arch in (("ami-0debian12amd64001", "amd64"), ("ami-0debian12arm64001", "arm64")):
        tags = {t["Key"]: t["Value"] for t in instances[image]["Tags"]}
        assert (tags["fleetbake"], tags["fleetbake-row"], tags["fleetbake-arch"]) == ("true", "debian-12", arch)
        assert instances[image]["State"]["Name"] == "terminated"
    assert {g["GroupName"] for i in instances.values() for g in i["SecurityGroups"]} == {g["GroupName"] for g in groups}
    # Then SSH, which no moto instance answers: each build stops at the timeout we passed, and cleans up.
    assert log.count("Waiting for SSH to become available...") == 2
    assert re.fullmatch(r"packer build failed: Build 'fleetbake.amazon-ebs.worker-(amd64|arm64)' errored after .*: "
                        r"Timeout waiting for SSH\.", result["error"])
    assert {arch for arch in ("amd64", "arm64") if f"Build 'fleetbake.amazon-ebs.worker-{arch}' errored after" in log} == {
        "amd64", "arm64"}
    assert 15 <= result["seconds"] < 120
    assert result["state"]["key_pairs"] == [] and not {g["GroupName"] for g in groups} & set(result["state"]["security_groups"])
    assert result["state"]["images"] == [] and not calls(result, "CreateImage")
    assert not (template.parent / "manifest.json").exists()
    with pytest.raises(packer.PackerError, match="left no .*manifest.json: no AMI was made"):
        packer.handoff(template.parent, row, "us-east-1")


def test_windows_ami_build_gets_as_far_as_winrm_against_moto(project, out, moto):
    row = project.rows["windows-2022"]
    template = packer.write(project, row, "ami", log=lambda _: None)
    only = packer.provisioned_sources(row, "ami")
    assert only == ["fleetbake.amazon-ebs.windows-amd64"]
    result = build_against_moto(template, only, {"winrm_timeout": "15s"}, moto.amis)
    log = "\n".join(result["log"])
    assert "fleetbake.amazon-ebs.windows-amd64: Found Image ID: ami-0windows200000001" in log
    [launch] = calls(result, "RunInstances")
    assert launch["ImageId"] == "ami-0windows200000001" and launch["InstanceType"] == "m5.xlarge"
    assert (launch["BlockDeviceMapping.1.DeviceName"], launch["BlockDeviceMapping.1.Ebs.VolumeSize"]) == ("/dev/sda1", "60")
    import base64

    user_data = base64.b64decode(launch["UserData"]).decode()
    assert user_data == (ROOT / "images/windows/ami/winrm-bootstrap.ps1").read_text()
    assert [c["IpPermissions.1.FromPort"] for c in calls(result, "AuthorizeSecurityGroupIngress")] == ["5986"]
    # The Administrator password, decrypted with the temporary key pair, then WinRM, which nothing answers.
    assert calls(result, "GetPasswordData") and "Password retrieved!" in log
    assert "Waiting for WinRM to become available..." in log
    assert result["error"].endswith("Timeout waiting for WinRM.")
    [instance] = result["state"]["instances"]
    assert instance["State"]["Name"] == "terminated" and result["state"]["key_pairs"] == []


def test_handoff_names_each_arch_ami_from_the_manifest_packer_writes(project, out):
    """The manifest post-processor's format (Packer 1.6.6, strip_path): it appends one entry per source that made an
    artifact, named as the source, and marks the run (an earlier run's entries stay in the file)."""
    row = project.rows["debian-12"]
    template = packer.write(project, row, "ami", "pydebug", log=lambda _: None)

    def entry(name: str, ami: str, run: str) -> dict:
        return {"name": name, "builder_type": "amazon-ebs", "build_time": 1764300000, "files": None,
                "artifact_id": f"us-west-2:{ami}", "packer_run_uuid": run, "custom_data": None}

    manifest = template.parent / "manifest.json"
    manifest.write_text(json.dumps({"builds": [entry("worker-amd64", "ami-0000000000000old0", "earlier"),
                                               entry("worker-arm64", "ami-0abcdef0123456789", "6f4c"),
                                               entry("worker-amd64", "ami-0123456789abcdef0", "6f4c")],
                                    "last_run_uuid": "6f4c"}))
    info = packer.handoff(template.parent, row, "us-west-2")
    assert info == {"worker_row": "debian-12", "region": "us-west-2", "amis": {
        "amd64": {"ami_id": "ami-0123456789abcdef0", "instance_type": "m5.large", "architecture": "x86_64"},
        "arm64": {"ami_id": "ami-0abcdef0123456789", "instance_type": "m7g.large", "architecture": "arm64"}}}
    assert list(info["amis"]) == ["amd64", "arm64"]
    assert json.loads((template.parent / "handoff.json").read_text()) == info
    assert list(packer.handoff(template.parent, row, "us-west-2", "arm64")["amis"]) == ["arm64"]
    # A run that made only one architecture's AMI (the other failed) hands off that one.
    manifest.write_text(json.dumps({"builds": [entry("worker-amd64", "ami-0000000000000old0", "earlier"),
                                               entry("worker-arm64", "ami-0abcdef0123456789", "7a1b")],
                                    "last_run_uuid": "7a1b"}))
    assert list(packer.handoff(template.parent, row, "us-west-2")["amis"]) == ["arm64"]
    with pytest.raises(packer.PackerError, match=r"names no AMI of debian-12 \(amd64\) from the last packer build"):
        packer.handoff(template.parent, row, "us-west-2", "amd64")


# --- matrix.yml's ami: per architecture, each one EC2 has, an instance type and a name filter of that architecture

ROW_AMI = MINIMAL.replace("    configurations: [pydebug]\n", "    configurations: [pydebug]\n    arches: [amd64, arm64, s390x]\n")


def ami_error(write_matrix, ami: str) -> str:
    path = write_matrix(ROW_AMI + ami)
    with pytest.raises(matrix.MatrixError) as info:
        matrix.load(path)
    message = str(info.value)
    assert "\n" not in message and message.startswith(f"{path}:")
    return message.removeprefix(f"{path}:")


PER_ARCH = """    ami:
      source_ami_owner: "136693071363"
      arches:
        amd64: {instance_type: AMD_TYPE, source_ami_name: AMD_NAME}
        arm64: {instance_type: ARM_TYPE, source_ami_name: ARM_NAME}
"""


def per_arch(amd_type="m5.large", amd_name="debian-12-amd64-*", arm_type="m7g.large", arm_name="debian-12-arm64-*"):
    return (PER_ARCH.replace("AMD_TYPE", amd_type).replace("AMD_NAME", amd_name)
            .replace("ARM_TYPE", arm_type).replace("ARM_NAME", arm_name))


@pytest.mark.parametrize("ami, line, field, reason", [
    (per_arch(arm_type="m5.large"), 16, "rows.debian-12.ami.arches.arm64.instance_type",
     "m5.large is an x86_64 instance type: arm64 needs a Graviton one (a g after the generation: m7g, c7g, t4g, r7g...)"),
    (per_arch(arm_type="c7i-flex.large"), 16, "rows.debian-12.ami.arches.arm64.instance_type", "c7i-flex.large is an x86_64"),
    (per_arch(amd_type="m7g.large"), 15, "rows.debian-12.ami.arches.amd64.instance_type",
     "m7g.large is a Graviton (arm64) instance type: amd64 needs an x86_64 one"),
    (per_arch(amd_type="c6gn.xlarge"), 15, "rows.debian-12.ami.arches.amd64.instance_type", "c6gn.xlarge is a Graviton"),
    (per_arch(amd_type="a1.large"), 15, "rows.debian-12.ami.arches.amd64.instance_type", "a1.large is a Graviton"),
    (per_arch(amd_type="t4g.micro"), 15, "rows.debian-12.ami.arches.amd64.instance_type", "t4g.micro is a Graviton"),
    (per_arch(arm_type="mac2.metal"), 16, "rows.debian-12.ami.arches.arm64.instance_type",
     "'mac2.metal': not an instance type family this check knows"),
    (per_arch(arm_name="debian-12-amd64-*"), 16, "rows.debian-12.ami.arches.arm64.source_ami_name",
     "debian-12-amd64-* names amd64, not arm64 (for arm64: debian-12-arm64-*)"),
    (per_arch(amd_name="debian-12-aarch64-*"), 15, "rows.debian-12.ami.arches.amd64.source_ami_name",
     "debian-12-aarch64-* names aarch64 (arm64), not amd64 (for amd64: debian-12-x86_64-*)"),
    (per_arch(amd_name="debian-12-s390x-*"), 15, "rows.debian-12.ami.arches.amd64.source_ami_name",
     "debian-12-s390x-* names s390x, not amd64 (for amd64: debian-12-amd64-*)"),
    (per_arch().replace("arm64: {", "s390x: {"), 16, "rows.debian-12.ami.arches.s390x",
     "EC2 has no s390x instances: an AMI is built for amd64, arm64 only"),
    (per_arch().replace("arm64: {", "aarch64: {"), 16, "rows.debian-12.ami.arches.aarch64",
     "'aarch64' is not an architecture fleetbake builds"),
    (per_arch().replace("arches:", "instance_type: m5.large\n      arches:"), 14, "rows.debian-12.ami.instance_type",
     "with arches, each architecture sets its own (arches.<arch>.instance_type)"),
    ('    ami: {source_ami_owner: "136693071363"}\n', 12, "rows.debian-12.ami.source_ami_name",
     "required field is missing (or give each architecture its own under arches)"),
    ('    ami: {instance_type: m7g.large, source_ami_name: debian-12-arm64-*, source_ami_owner: "136693071363"}\n', 12,
     "rows.debian-12.ami.instance_type", "m7g.large is a Graviton (arm64) instance type: amd64 needs"),
], ids=["x86-for-arm64", "flex-for-arm64", "graviton-for-amd64", "gn-for-amd64", "a1-for-amd64", "t4g-for-amd64", "mac",
        "amd64-filter-for-arm64", "aarch64-filter-for-amd64", "s390x-filter", "no-ec2-arch", "unknown-arch",
        "flat-beside-arches", "no-filter", "flat-graviton"])
def test_ami_settings_fit_their_architecture(write_matrix, ami, line, field, reason):
    assert ami_error(write_matrix, ami).startswith(f"{line}: {field}: {reason}")


def test_only_the_rows_own_arches_get_an_ami(write_matrix):
    only_amd = ROW_AMI.replace("arches: [amd64, arm64, s390x]", "arches: [amd64, s390x]")
    path = write_matrix(only_amd + per_arch())
    with pytest.raises(matrix.MatrixError, match=r":16: rows\.debian-12\.ami\.arches\.arm64: arm64 is not one of the "
                                                 r"row's arches \(amd64, s390x\)$"):
        matrix.load(path)
    flat = '    ami: {instance_type: m5.large, source_ami_name: debian-12-amd64-*, source_ami_owner: "136693071363"}\n'
    path = write_matrix(only_amd.replace("[amd64, s390x]", "[arm64]") + flat)
    with pytest.raises(matrix.MatrixError, match=r":12: rows\.debian-12\.ami: amd64 is not one of the row's arches \(arm64\)$"):
        matrix.load(path)


def test_real_ami_settings_stay_accepted(write_matrix):
    for ami in (per_arch(), per_arch(amd_type="m7i-flex.large", arm_type="c7gn.2xlarge", arm_name="debian-12-aarch64-*"),
                per_arch(amd_type="c5ad.4xlarge", arm_type="im4gn.large"),
                per_arch(arm_type="t4g.xlarge", amd_name="debian-12-*", arm_name="debian-12-*"),
                per_arch(amd_type="x2iedn.xlarge", arm_type="is4gen.medium"),
                per_arch(arm_type="a1.large", amd_type="g4dn.xlarge"),
                '    ami: {instance_type: m5.large, source_ami_name: debian-12-amd64-*, source_ami_owner: "136693071363"}\n',
                '    ami: {source_ami_name: debian-12-amd64-*, source_ami_owner: "136693071363"}\n'):
        row = matrix.load(write_matrix(ROW_AMI + ami)).rows["debian-12"]
        assert row.spec.ami.builds and set(row.spec.ami.builds) <= {"amd64", "arm64"}
    assert matrix.load(write_matrix(ROW_AMI + per_arch())).rows["debian-12"].spec.ami.builds["arm64"] == matrix.AmiArch(
        instance_type="m7g.large", source_ami_name="debian-12-arm64-*")


@pytest.mark.parametrize("row, target, reason", [("windows-2022", "docker", "has an AMI target only"),
                                                 ("windows-2022", "ami-rehearsal", "has an AMI target only"),
                                                 ("debian-12", "vagrant", "expected one of docker, ami, ami-rehearsal")])
def test_targets_a_row_cannot_have_are_usage_errors(project, out, row, target, reason):
    from fleetbake.errors import UsageError

    with pytest.raises(UsageError, match=reason):
        packer.write(project, project.rows[row], target, log=lambda _: None)


# --- the Windows AMI: which step reads the secret, as far as it can be checked without Windows ---------

WINDOWS_AMI = ROOT / "images" / "windows" / "ami"


def powershell_source(path: Path) -> bytes:
    """A .ps1 file; EC2 user data wraps its script in <powershell> tags, which are not PowerShell."""
    text = path.read_text()
    return re.sub(r"^\s*</?powershell>\s*$", "", text, flags=re.MULTILINE).encode()


def powershell_parser():
    import tree_sitter as ts  # test extras: a missing parser is a failure, never a skip
    import tree_sitter_powershell as grammar
    return ts.Parser(ts.Language(grammar.language()))


def parse_errors(tree) -> list[str]:
    found, stack = [], [tree.root_node]
    while stack:
        node = stack.pop()
        if node.type == "ERROR" or node.is_missing:
            found.append(f"line {node.start_point[0] + 1}: {node.text.decode(errors='replace')[:60]!r}")
        elif node.has_error:
            stack.extend(node.children)
    return found


def commands(path: Path) -> list[tuple[str, dict[str, str]]]:
    """(command, {-parameter: argument text}) for every command in a script, from its syntax tree."""
    tree = powershell_parser().parse(powershell_source(path))
    found, stack = [], [tree.root_node]
    while stack:
        node = stack.pop()
        stack.extend(reversed(node.children))
        named = [c.text.decode() for c in node.children if c.type == "command_name"]
        if node.type != "command" or not named:
            continue  # `& path` invocations have no command_name: not needed here
        name = named[0]
        parameters, current = {}, None
        for element in (c for e in node.children if e.type == "command_elements" for c in e.children):
            if element.type == "command_argument_sep":
                continue
            if element.type == "command_parameter":
                current = element.text.decode().lower()
                parameters[current] = ""
            elif current is not None:
                parameters[current] = element.text.decode()
                current = None
        found.append((name, parameters))
    return found


def test_every_powershell_file_parses():
    parser = powershell_parser()
    scripts = sorted((ROOT / "images" / "windows").rglob("*.ps1"))
    assert len(scripts) >= 8
    assert {path.name: parse_errors(parser.parse(powershell_source(path))) for path in scripts} == {
        path.name: [] for path in scripts}
    # The check bites: an unclosed block and a stray closing tag are errors.
    assert parse_errors(parser.parse(b"if ($x) {\n  Write-Output 1\n"))
    assert parse_errors(parser.parse(b"</powershell>\n"))


def test_windows_ami_reads_the_secret_in_a_system_step_and_walls_off_the_build_user(project, out):
    template = packer.write(project, project.rows["windows-2022"], "ami", log=lambda _: None)
    steps = provisioners(template)
    [ami] = [b for k, b in steps if k == "file" and b.get("destination") == '"C:/fleetbake/ami/"']
    assert resolve(template, ami["source"]) == WINDOWS_AMI  # the checkout's files, uploaded as they are
    assert steps[-1] == ("powershell", {**steps[-1][1], "inline": ['"C:/fleetbake/ami/Install-AmiWorker.ps1"']})

    install = commands(WINDOWS_AMI / "Install-AmiWorker.ps1")
    tasks = {args["-taskname"]: args for name, args in install if name == "Register-ScheduledTask"}
    config, worker = tasks["fleetbake-worker-config"], tasks["buildbot-worker"]
    assert config["-user"] == "SYSTEM" and "-AtStartup" in config["-trigger"]
    assert "worker-config.ps1" in next(args["-argument"] for name, args in install
                                       if name == "New-ScheduledTaskAction" and "worker-config" in args.get("-argument", ""))
    assert worker["-user"] == "buildbot" and worker["-runlevel"] == "Limited"
    assert "-trigger" not in worker, "only the SYSTEM step starts the worker, once the password is in place"
    [rule] = [args for name, args in install if name == "New-NetFirewallRule"]
    assert (rule["-direction"], rule["-action"]) == ("Outbound", "Block")
    assert "'169.254.169.254'" in rule["-remoteaddress"] and "'fd00:ec2::254'" in rule["-remoteaddress"]
    assert rule["-localuser"] == '"O:LSD:(A;;CC;;;$sid)"' and "-protocol" not in rule
    assert ("$sid", "(Get-LocalUser -Name buildbot).SID.Value") in re.findall(
        r"^(\$sid) = (.+)$", (WINDOWS_AMI / "Install-AmiWorker.ps1").read_text(), re.MULTILINE)

    # The metadata service and SSM are read by the SYSTEM step only; it refuses to run without the rule.
    system_step = (WINDOWS_AMI / "worker-config.ps1").read_text()
    assert "http://169.254.169.254/latest/api/token" in system_step and "Get-SSMParameter" in system_step
    assert any(name == "Get-NetFirewallRule" and args["-name"] == "fleetbake-block-imds-buildbot"
               for name, args in commands(WINDOWS_AMI / "worker-config.ps1"))
    for user_side in (WINDOWS_AMI / "start-worker.ps1", ROOT / "images" / "windows" / "entrypoint.ps1"):
        text = user_side.read_text()
        assert "169.254.169.254" not in text and "SSM" not in text and "user-data" not in text, user_side.name
    # The buildbot user's step reads the password file once and deletes it before the worker starts.
    assert ("Remove-Item", {"-force": "$secret"}) in commands(WINDOWS_AMI / "start-worker.ps1")
    assert re.search(r"Remove-Item -Force \$secret\b.*\n& C:/fleetbake/entrypoint\.ps1",
                     (WINDOWS_AMI / "start-worker.ps1").read_text())


def test_the_worker_package_reaches_every_target_as_the_dockerfile_copies_it(project, out):
    row = project.rows["debian-12"]
    context = render.render_row(project, row)
    folder = render.placed(row, "fleetbake/")  # the package's folder in the context: in its layer's tree
    package = sorted("fleetbake/" + name[len(folder):] for name in context if name.startswith(folder))
    assert package == sorted(name for name, _ in families.FAMILIES["debian"].runtime_files)
    assert {"fleetbake/__init__.py", "fleetbake/worker/entrypoint.py", "fleetbake/worker/buildbot.tac"} <= set(package)
    assert not any(context[folder + name[len("fleetbake/"):]].executable for name in package)  # run with python -m
    # The Dockerfile copies the layer's tree to /: the package lands in /opt/fleetbake/fleetbake/.
    [layer] = [n for n, layer in enumerate(families.plan(row).layers, start=1)
               if any("fleetbake/" in copy.sources for copy in layer.copies)]
    assert folder == f"{families.LAYERS_DIR}/{layer}/opt/fleetbake/fleetbake/"
    assert f"\nCOPY {families.LAYERS_DIR}/{layer}/ /\n" in context["Dockerfile"].content.decode()
    for target in packer.targets(row):
        template = packer.write(project, row, target, log=lambda _: None)
        inline = [line.strip('"') for kind, body in provisioners(template) if kind == "shell" for line in body["inline"]]
        [copy] = [line for line in inline if line.startswith(f"(cd {packer.STAGE}/{folder} && ")]
        assert "install -d -m 0755 /opt/fleetbake/fleetbake/{}" in copy and "-m 0644 {} /opt/fleetbake/fleetbake/{}" in copy



def test_every_linux_provisioning_step_gets_the_inputs_time_as_the_dockerfiles_runs_do(project, out, monkeypatch):
    """Packer's shell steps run with SOURCE_DATE_EPOCH (the Dockerfile's ARG), and a build passes the inputs' commit
    time: useradd's day in /etc/shadow is then the inputs' day in every target, not the day Packer ran."""
    row = project.rows["debian-12"]
    for target in packer.targets(row):
        template = packer.write(project, row, target, log=lambda _: None)
        commands = [body for kind, body in provisioners(template) if kind == "shell"]
        running = [body for body in commands if any("/opt/fleetbake/provision/" in line and ".sh" in line
                                                    and not line.startswith('"install ') for line in body["inline"])]
        assert running and all(body.get("environment_vars") == ['"SOURCE_DATE_EPOCH=${var.source_date_epoch}"']
                               for body in running), (target, running)
        assert hcl2.loads(template.read_text())["variable"]  # declared: validate would refuse an undeclared one
        packer.validate(template)
    monkeypatch.setenv("SOURCE_DATE_EPOCH", "1700000000")  # the inputs' time, as identity.source finds it
    template = packer.write(project, row, "ami", log=lambda _: None)
    variables = packer.build_variables(project, row, "ami", template, log=lambda _: None)
    assert variables["source_date_epoch"] == "1700000000"


if __name__ == "__main__":  # network_namespace and build_against_moto run this file inside `unshare --net`
    if sys.argv[1] == LOOPBACK_ONLY:
        import socket

        _loopback_up()
        print(json.dumps([name for _, name in socket.if_nameindex()]))
    else:
        _run_in_netns(sys.argv[1])
