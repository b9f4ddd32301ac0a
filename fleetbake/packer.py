"""Packer HCL2 templates from the same matrix rows and the same provisioning scripts.

`invoke packer --target docker|ami|ami-rehearsal --os ROW` writes build/packer/<row>/<target>/: the row's
rendered build context (scripts, packages.txt, CA certificates, entrypoint) and
`<target>.pkr.hcl`, produced from Python data with python-hcl2's writer, parsed
back as a check, and laid out by `packer fmt`. `plugins.pkr.hcl` holds the
`required_plugins` block that modern Packer needs and Packer 1.6.6 rejects: it is
a file of its own, so 1.6.6 is given the template file alone.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any, Callable

import hcl2

from . import paths, render
from .errors import FleetbakeError, UsageError
from .matrix import Matrix, RowView

Log = Callable[[str], None]
PROVISION = render.PROVISION_DIR
DEBIAN_AMI_OWNER = "136693071363"  # Debian's official AWS account
TARGETS = ("docker", "ami", "ami-rehearsal")
SUDO = "sudo -E sh -c '{{ .Vars }} {{ .Path }}'"  # as on an AMI, whose ssh user is not root


class PackerError(FleetbakeError):
    pass


# --- python-hcl2's dict format: quoted strings, blocks marked __is_block__ -------------

def q(value: str) -> str:
    """An HCL string literal (a literal `${` is escaped as `$${`)."""
    return json.dumps(value.replace("${", "$${"))


def expr(expression: str) -> str:
    return "${" + expression + "}"


def block(*labels: str, **body: Any) -> dict[str, Any]:
    inner: dict[str, Any] = {**body, "__is_block__": True}
    for label in reversed(labels):
        inner = {q(label): inner}
    return inner


def variable(name: str, type_: str, default: Any = None, description: str = "", sensitive: bool = False) -> dict:
    body: dict[str, Any] = {"type": type_, "description": q(description)}
    if default is not None:
        body["default"] = q(default) if isinstance(default, str) else default
    if sensitive:
        body["sensitive"] = True
    return block(name, **body)


# --- provisioning shared with the Dockerfile ----------------------------------------

def linux_provisioners(row: RowView, sudo: bool, pip_extras: str = "", uid: int | None = None) -> list[dict]:
    """The Dockerfile's steps, as Packer provisioners calling the very same scripts (`uid`: the AMI's own)."""
    execute = {"execute_command": q(SUDO)} if sudo else {}
    family = render.FAMILIES[row.spec.family]
    runtime = [q(source.name) for source in family.runtime_files]  # what the Dockerfile copies to /opt/fleetbake/
    return [
        block("shell", inline=[q(f"mkdir -p {PROVISION} /opt/fleetbake/ca-certificates"),
                               q(f"chmod 0777 {PROVISION} /opt/fleetbake /opt/fleetbake/ca-certificates")], **execute),
        block("file", source=q("scripts/"), destination=q(PROVISION)),
        block("file", source=q("packages.txt"), destination=q(f"{PROVISION}/packages.txt")),
        block("file", source=q("ca-certificates/"), destination=q("/opt/fleetbake/ca-certificates")),
        block("file", sources=runtime, destination=q("/opt/fleetbake/")),
        block(
            "shell",
            environment_vars=[q(f"WORKER_USER={row.spec.user}"), q(f"WORKER_UID={uid or row.spec.uid}"),
                              q(f"BUILDBOT_WORKER_VERSION={row.spec.worker_version}"),
                              q(f"WORKER_PIP_EXTRAS={pip_extras}")],
            inline=[
                q(f"chmod 0755 {PROVISION}/*.sh /opt/fleetbake/entrypoint.py"),
                q(f"{PROVISION}/{family.configure}"),
                q(f"{PROVISION}/install-packages.sh {PROVISION}/packages.txt"),
                q(f"{PROVISION}/install-ca.sh /opt/fleetbake/ca-certificates"),
                q(f"{PROVISION}/create-user.sh"),
                q(f"{PROVISION}/install-worker.sh"),
                q(f"chmod 0755 {PROVISION} /opt/fleetbake /opt/fleetbake/ca-certificates"),
            ],
            **execute,
        ),
    ]


def docker_template(row: RowView) -> dict[str, Any]:
    changes = [
        'ENTRYPOINT ["/usr/bin/tini", "-e", "143", "--", "/opt/fleetbake/entrypoint.py"]',
        'CMD ["worker"]',
        "WORKDIR /buildarea",
        'VOLUME ["/buildarea"]',
        f"ENV LANG=C.UTF-8 FLEETBAKE_ROW={row.name} FLEETBAKE_IMAGE={packer_image_tag(row)} FLEETBAKE_USER={row.spec.user}",
        f"LABEL io.fleetbake.row={row.name} io.fleetbake.builder=packer io.fleetbake.worker-version={row.spec.worker_version}",
    ]
    return _docker_build(row, "worker", changes, linux_provisioners(row, sudo=False), packer_image_tag(row))


def _docker_build(row: RowView, name: str, changes: list[str], provisioners: list[dict], tag: str) -> dict[str, Any]:
    """Packer's docker builder on the row's locally bootstrapped base, tagged as fleetbake's."""
    return {
        "variable": [variable("base", "string", row.spec.base, "base image (locally bootstrapped: pull = false)")],
        "source": [block("docker", name, image=expr("var.base"), commit=True, pull=False,
                         changes=[q(change) for change in changes])],
        "build": [block(
            name=q("fleetbake"),
            sources=[q(f"source.docker.{name}")],
            provisioner=provisioners,
            **{"post-processor": [block("docker-tag", repository=q(render.IMAGE_REPO), tags=[q(tag.split(":", 1)[1])])]},
        )],
    }


def ami_template(row: RowView, config: str) -> dict[str, Any]:
    ami = _ami_spec(row)
    connect = dict(communicator=q("ssh"), ssh_username=q(ami.ssh_username), ssh_timeout=expr("var.ssh_timeout"))
    timeout = variable("ssh_timeout", "string", "5m", "how long to wait for SSH on the build instance")
    return _ami_build(row, config, connect, timeout, ami_provisioners(row))


def _ami_spec(row: RowView):
    if row.spec.ami is None:
        raise UsageError(f"rows.{row.name}.ami is not set: the row has no AMI target")
    return row.spec.ami


def _provisioned_name(row: RowView) -> str:
    return "windows" if row.spec.family == "windows" else "worker"


def _ami_build(row: RowView, config: str, connect: dict[str, Any], timeout: dict, provisioners: list[dict]) -> dict[str, Any]:
    """One amazon-ebs source, provisioned over its communicator (`connect`, whose timeout is a variable)."""
    ami = _ami_spec(row)
    name = _provisioned_name(row)
    return {
        "variable": [*_ami_variables(ami), timeout],
        "source": [block("amazon-ebs", name, **connect, **_ami_common(row, config, ami))],
        "build": [block(
            name=q("fleetbake"),
            sources=[q(f"source.amazon-ebs.{name}")],
            provisioner=provisioners,
            **{"post-processor": [block("manifest", output=q("manifest.json"), strip_path=True)]},
        )],
    }


def _ami_variables(ami) -> list[dict]:
    return [
        variable("region", "string", "us-east-1", "AWS region"),
        variable("profile", "string", "", "AWS profile (credentials stay in ~/.aws or the environment)"),
        variable("instance_type", "string", ami.instance_type, "from matrix.yml"),
        variable("inputs_hash", "string", "unknown", "fleetbake inputs hash, for the tags"),
        variable("ec2_endpoint", "string", "", "EC2 API endpoint override (tests use moto on loopback)"),
    ]


def _ami_common(row: RowView, config: str, ami) -> dict[str, Any]:
    tags = {q("Name"): q(f"fleetbake-{row.name}-{config}"), q("fleetbake"): q("true"), q("fleetbake-row"): q(row.name),
            q("fleetbake-configuration"): q(config), q("fleetbake-inputs-hash"): expr("var.inputs_hash"),
            q("fleetbake-date"): expr('formatdate("YYYY-MM-DD", timestamp())')}
    return dict(
        region=expr("var.region"),
        profile=expr("var.profile"),
        instance_type=expr("var.instance_type"),
        ami_name='"' + f"fleetbake-{row.name}-{config}-" + '${formatdate("YYYYMMDDhhmmss", timestamp())}"',
        source_ami_filter=[block(
            filters={q("name"): q(ami.source_ami_name), q("virtualization-type"): q("hvm"),
                     q("root-device-type"): q("ebs"), q("architecture"): q("x86_64")},
            owners=[q(ami.source_ami_owner)],
            most_recent=True,
        )],
        launch_block_device_mappings=[block(device_name=q("/dev/sda1" if row.spec.family == "windows" else "/dev/xvda"), volume_size=ami.volume_gb, volume_type=q("gp3"),
                                            iops=3000, throughput=125, delete_on_termination=True)],
        tags=tags,
        run_tags={q("fleetbake"): q("true"), q("fleetbake-row"): q(row.name)},
        custom_endpoint_ec2=expr("var.ec2_endpoint"),
        skip_region_validation=expr('var.ec2_endpoint != ""'),
    )


def ami_provisioners(row: RowView) -> list[dict]:
    """Everything an AMI gets: the Dockerfile's scripts (boto3 added to the worker's venv,
    for WORKERPASS_SSM), then the worker as a systemd service that reads its name and
    password at boot, never baked in."""
    return linux_provisioners(row, sudo=True, pip_extras="boto3", uid=_ami_spec(row).uid) + [
        block("file", sources=[q("ami/fleetbake-worker.service"), q("ami/fleetbake-worker-config.service"),
                               q("ami/fleetbake-worker-config"), q("ami/fleetbake-latent-stop")],
              destination=q("/tmp/")),
        block("shell", inline=[
            q("install -m 0644 /tmp/fleetbake-worker.service /tmp/fleetbake-worker-config.service /etc/systemd/system/"),
            q("install -m 0755 /tmp/fleetbake-worker-config /tmp/fleetbake-latent-stop /opt/fleetbake/"),
            q("systemctl enable fleetbake-worker-config.service fleetbake-worker.service"),
        ], execute_command=q(SUDO)),
    ]


# What the official Debian and Fedora cloud images have and a bootstrapped base lacks.
REHEARSAL_BASE = {
    "debian": "apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -qq -y --no-install-recommends"
              " systemd systemd-sysv sudo dbus >/dev/null && rm -rf /var/lib/apt/lists/*",
    "fedora": "dnf install -q -y systemd sudo && dnf clean all",
}


def rehearsal_template(row: RowView) -> dict[str, Any]:
    """The AMI's provisioners, verbatim, on a local container that boots systemd: try the
    AMI's provisioning and its boot-time units before paying for an EC2 build."""
    changes = ['ENTRYPOINT ["/sbin/init"]', 'CMD []', "ENV container=docker",
               f"LABEL io.fleetbake.row={row.name} io.fleetbake.builder=packer-ami-rehearsal"]
    # The cloud image's login user, as cloud-init creates it at first boot (uid 1000).
    login_user = f"useradd --create-home --user-group --uid 1000 {_ami_spec(row).ssh_username}"
    provisioners = [block("shell", inline=[q(REHEARSAL_BASE[row.spec.family]), q(login_user)]), *ami_provisioners(row)]
    return _docker_build(row, "rehearsal", changes, provisioners, rehearsal_image_tag(row))


def rehearsal_image_tag(row: RowView) -> str:
    return f"{render.IMAGE_REPO}:{row.name}-ami-rehearsal"


def provisioned_source(row: RowView, target: str) -> str | None:
    """`-only` for `--build`: the AMI template's one source, named as Packer 1.6.6 matches it
    (`<build>.<type>.<name>`; a bare `amazon-ebs.<name>` silently matches nothing)."""
    if target != "ami":
        return None
    return f"fleetbake.amazon-ebs.{_provisioned_name(row)}"


def packer_image_tag(row: RowView) -> str:
    return f"{render.IMAGE_REPO}:{row.name}-packer"


PLUGINS = {"packer": [block(required_plugins={"docker": {"source": q("github.com/hashicorp/docker"), "version": q(">= 1.0.0")},
                                              "amazon": {"source": q("github.com/hashicorp/amazon"), "version": q(">= 1.3.0")}})]}


# --- writing, checking, running -------------------------------------------------------

def write(matrix: Matrix, row: RowView, target: str, config: str | None = None, log: Log = print) -> Path:
    if target not in TARGETS:
        raise UsageError(f"--target {target!r}: expected one of {', '.join(TARGETS)}")
    windows = row.spec.family == "windows"
    if windows and target != "ami":
        raise UsageError(f"--target {target}: {row.name} has an AMI target only (no Windows container engine here)")
    config = config or next(iter(row.configurations))
    templates = {"docker": docker_template, "ami-rehearsal": rehearsal_template,
                 "ami": lambda r: (windows_template if windows else ami_template)(r, config)}
    data = templates[target](row)  # before anything is written: a bad row leaves no half-written output
    out = paths.build_dir() / "packer" / row.name / target
    render.write_context(render.render_row(matrix, row, render.ca_certs_from(None)), out)  # the Dockerfile's scripts
    ami_files = paths.IMAGES / ("windows/ami" if windows else "ami")
    if target != "docker":
        _copy_files(ami_files, sorted(f.name for f in ami_files.iterdir()), out / "ami")
    for name, content in {f"{target}.pkr.hcl": data, "plugins.pkr.hcl": PLUGINS}.items():
        _write_hcl(out / name, content)
    log(f"packer: wrote {out / f'{target}.pkr.hcl'}")
    return out / f"{target}.pkr.hcl"


def _write_hcl(path: Path, data: dict[str, Any]) -> None:
    text = hcl2.dumps(data)
    hcl2.loads(text)  # python-hcl2 must read back what it wrote
    head = "# Generated from matrix.yml by fleetbake (invoke packer): do not edit.\n"
    tmp = path.with_name(f".tmp.{path.name}")  # packer fmt wants the .pkr.hcl ending
    tmp.write_text(head + text)
    try:
        _packer(["fmt", str(tmp)], cwd=path.parent)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def _copy_files(source: Path, names: list[str], directory: Path) -> None:
    directory.mkdir(parents=True, exist_ok=True)
    for name in names:
        shutil.copy(source / name, directory / name)


def _packer(args: list[str], cwd: Path, env: dict[str, str] | None = None, stream: Log | None = None) -> str:
    binary = shutil.which("packer")
    if binary is None:
        raise PackerError("packer is not installed (apt-get install packer, or run scripts/setup.sh)")
    process = subprocess.Popen([binary, *args], cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                               env={**os.environ, "CHECKPOINT_DISABLE": "1", **(env or {})})
    lines = []
    for line in process.stdout:
        lines.append(line.rstrip())
        if stream:
            stream(line.rstrip())
    if process.wait() != 0:
        # packer build names the failing build and its cause in an "errored" line
        reason = next((l for l in lines if " errored after " in l), None) or next(
            (l for l in reversed(lines) if l.strip()), "no output")
        raise PackerError(f"packer {args[0]} failed: {reason.strip()}")
    return "\n".join(lines)


def validate(template: Path) -> str:
    """Packer 1.6.6 is given the template file alone (it rejects plugins.pkr.hcl)."""
    return _packer(["validate", template.name], cwd=template.parent)


def fmt_check(template: Path) -> None:
    _packer(["fmt", "-check", template.name], cwd=template.parent)


def build(template: Path, only: str | None = None, variables: dict[str, str] | None = None,
          env: dict[str, str] | None = None, log: Log = print) -> str:
    args = ["build", "-color=false"]
    if only:
        args.append(f"-only={only}")
    for key, value in (variables or {}).items():
        args.append(f"-var={key}={value}")
    return _packer([*args, template.name], cwd=template.parent, env=env, stream=log)


def handoff(template_dir: Path, row: RowView, region: str) -> dict[str, str]:
    """What the devguide says the admins need: instance size, region, AMI ID."""
    try:
        manifest = json.loads((template_dir / "manifest.json").read_text())
    except FileNotFoundError:
        raise PackerError(f"packer build left no {template_dir / 'manifest.json'}: no AMI was made") from None
    artifact = manifest["builds"][-1]["artifact_id"]  # "us-east-1:ami-0123..."
    match = re.fullmatch(r"([a-z0-9-]+):(ami-[0-9a-f]+)", artifact)
    if not match:
        raise PackerError(f"unexpected artifact id in manifest.json: {artifact!r}")
    info = {"instance_type": row.spec.ami.instance_type, "region": match.group(1), "ami_id": match.group(2),
            "worker_row": row.name}
    (template_dir / "handoff.json").write_text(json.dumps(info, indent=2) + "\n")
    return info


def windows_template(row: RowView, config: str) -> dict[str, Any]:
    """Windows Server AMI: WinRM, the same PowerShell provisioning as the Windows Dockerfile, then
    images/windows/ami/Install-AmiWorker.ps1: the buildbot user, its firewall rule, the boot tasks."""
    connect = dict(communicator=q("winrm"), winrm_username=q("Administrator"), winrm_use_ssl=True, winrm_insecure=True,
                   winrm_timeout=expr("var.winrm_timeout"), user_data_file=q("ami/winrm-bootstrap.ps1"))
    timeout = variable("winrm_timeout", "string", "30m", "how long to wait for WinRM on the build instance")
    return _ami_build(row, config, connect, timeout, [
        block("file", source=q("scripts/"), destination=q("C:/fleetbake/provision/")),
        block("file", source=q("packages.txt"), destination=q("C:/fleetbake/provision/packages.txt")),
        block("file", source=q("ca-certificates/"), destination=q("C:/fleetbake/ca-certificates/")),
        block("file", sources=[q(source.name) for source in render.FAMILIES["windows"].runtime_files],
              destination=q("C:/fleetbake/")),
        block("file", source=q("ami/"), destination=q("C:/fleetbake/ami/")),
        block("powershell", inline=[
            q("C:/fleetbake/provision/Install-BuildTools.ps1 -PackagesFile C:/fleetbake/provision/packages.txt"),
            q("C:/fleetbake/provision/Install-CaCertificates.ps1 -Path C:/fleetbake/ca-certificates"),
            q(f"C:/fleetbake/provision/Install-Worker.ps1 -WorkerVersion {row.spec.worker_version}"),
        ]),
        block("windows-restart"),
        # Last: it registers the task that closes Packer's WinRM listener at the fleet instance's first boot.
        block("powershell", inline=[q("C:/fleetbake/ami/Install-AmiWorker.ps1")]),
    ])
