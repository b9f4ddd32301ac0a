"""Packer HCL2 templates from the same plan as the Dockerfile (families.py).

`invoke render` writes the committed packer/<row>/<target>/ (docker, ami, ami-rehearsal; Windows:
ami): `<target>.pkr.hcl`, produced from Python data with python-hcl2's writer, parsed back as a
check and laid out by `packer fmt`, and `plugins.pkr.hcl`, the `required_plugins` block that
modern Packer needs and Packer 1.6.6 rejects (a file of its own: 1.6.6 is given the template
alone). A template reads the row's build context from images/<family>/<row>/ (var.context);
`invoke packer --build` passes build/contexts/<row>/, which adds the host's extra CA
certificates, and builds in build/packer/<row>/<target>/.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import tempfile
from pathlib import Path
from typing import Any, Callable

import hcl2

from fleetbake import files, paths, proc
from fleetbake.errors import UsageError
from fleetbake.pipeline import arches, families, identity, render
from fleetbake.pipeline.matrix import Matrix, RowView

Log = Callable[[str], None]
TARGETS = ("docker", "ami", "ami-rehearsal")
SUDO = "sudo -E sh -c '{{ .Vars }} {{ .Path }}'"  # as on an AMI, whose ssh user is not root


class PackerError(proc.ProcError):
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


# --- provisioning: families.py's plan, as Packer provisioners ---------------------------

STAGE = "/tmp/fleetbake-context"  # the build context, uploaded once; each layer installs its files from it


def _context(sub: str = "") -> str:
    """A path in the build context: var.context is relative to this template's folder."""
    return '"${path.root}/${var.context}/' + sub + '"'


def _repo(sub: str) -> str:
    """A path in this checkout's images/ (files every host has: the AMI's units)."""
    return '"${path.root}/${var.images}/' + sub + '"'


def _install(copy: families.Copy, modes: dict[str, int], placed: dict[str, str]) -> list[str]:
    """What Docker's COPY does, as root: the files (or a folder's files) into `dest`, owned by root.
    `placed`: where the context keeps each source (families.Plan.placed); the AMI's own files are where named."""
    lines = [f"install -d -m 0755 {copy.dest}"]
    for source in copy.sources:
        where = placed.get(source, source)
        if source.endswith("/"):  # its tree: folders 0755, files 0644, as Docker copies a tar without folder entries
            lines.append(f"(cd {STAGE}/{where} && find . -mindepth 1 -type d -exec install -d -m 0755 {copy.dest}/{{}} \\; "
                         f"&& find . -type f -exec install -o root -g root -m 0644 {{}} {copy.dest}/{{}} \\;)")
        else:
            lines.append(f"install -o root -g root -m {modes[where]:04o} {STAGE}/{where} {copy.dest}/")
    return lines


def _modes(matrix: Matrix, row: RowView) -> dict[str, int]:
    context = render.render_row(matrix, row)
    modes = {name: 0o755 if item.executable else 0o644 for name, item in context.items()}
    for copy in families.AMI_FILES:
        for source in copy.sources:
            modes[source] = 0o755 if os.access(paths.IMAGES / source, os.X_OK) else 0o644
    return modes


def linux_provisioners(matrix: Matrix, row: RowView, plan: families.Plan, sudo: bool,
                       extra: tuple[families.Layer, ...] = ()) -> list[dict]:
    """The plan's layers in order: each installs its files from the uploaded context, then runs its commands."""
    execute = {"execute_command": q(SUDO)} if sudo else {}
    modes = _modes(matrix, row)
    placed = plan.placed()
    uploads = [block("shell", inline=[q(f"rm -rf {STAGE}"), q(f"mkdir -p {STAGE}")]),  # as the ssh user: it uploads
               block("file", source=_context(), destination=q(STAGE))]
    if extra:
        uploads.append(block("file", source=_repo("ami/"), destination=q(f"{STAGE}/ami")))
    # The Dockerfile's ARG SOURCE_DATE_EPOCH, for every command: the times a build leaves (useradd's day in
    # /etc/shadow, pip's .pyc) are the inputs' commit time, not the day Packer ran.
    epoch = {"environment_vars": ['"SOURCE_DATE_EPOCH=${var.source_date_epoch}"']}
    layers = []
    for layer in (*plan.layers, *extra):
        lines = [line for copy in layer.copies for line in _install(copy, modes, placed if layer in plan.layers else {})]
        layers.append(block("shell", inline=[q(line) for line in [*lines, *(run.line() for run in layer.runs)]],
                            **epoch, **execute))
    # Docker's WORKDIR creates the folder if missing (and leaves an existing one as it is); `docker commit` does not.
    finish = [f"rm -rf {STAGE}", f"mkdir -p {plan.runtime.workdir}"]
    return [*uploads, *layers, block("shell", inline=[q(line) for line in finish], **execute)]


def _changes(runtime: families.Runtime, label_variable: str | None) -> list[str]:
    changes = [q(line) for line in runtime.instructions()]
    if label_variable:
        changes.append('"LABEL ${var.' + label_variable + '}"')
    return changes


def _common_variables(matrix: Matrix, row: RowView, directory: Path) -> list[dict]:
    context = os.path.relpath(paths.image_dir(matrix, row), directory)
    images = os.path.relpath(paths.IMAGES, directory)
    common = [variable("context", "string", context, "the build context, relative to this folder (invoke packer passes "
                       "build/contexts/<row>/, which adds the host's extra CA certificates)"),
              variable("images", "string", images, "this checkout's images/, relative to this folder")]
    if row.spec.family != "windows":
        common.append(variable("source_date_epoch", "string", "0", "the inputs' commit time, as the Dockerfile's ARG "
                               "(invoke packer passes it): every time the provisioning leaves in the image"))
    return common


def docker_template(matrix: Matrix, row: RowView, directory: Path) -> dict[str, Any]:
    """The Dockerfile's image, built by Packer: the same plan, the same runtime settings, the same labels."""
    plan = families.plan(row)
    labels = variable("labels", "string", families.label_arguments([(f"{identity.LABEL_PREFIX}.row", row.name)]),
                      "more LABEL arguments (invoke packer passes every label `invoke build` gives the image)")
    return _docker_build(row, "worker", _changes(plan.runtime, "labels"), linux_provisioners(matrix, row, plan, sudo=False),
                         identity.packer_image_tag(row), [*_common_variables(matrix, row, directory), labels])


def _docker_build(row: RowView, name: str, changes: list[str], provisioners: list[dict], tag: str,
                  variables: list[dict]) -> dict[str, Any]:
    """Packer's docker builder on the row's locally bootstrapped base, tagged as fleetbake's."""
    return {
        "variable": [variable("base", "string", row.spec.base, "base image (locally bootstrapped: pull = false)"), *variables],
        # container_dir: Packer bind-mounts its files there; a folder the base already has leaves no trace in the image.
        "source": [block("docker", name, image=expr("var.base"), commit=True, pull=False, container_dir=q("/mnt"),
                         changes=changes)],
        "build": [block(
            name=q("fleetbake"),
            sources=[q(f"source.docker.{name}")],
            provisioner=provisioners,
            **{"post-processor": [block("docker-tag", repository=q(identity.IMAGE_REPO), tags=[q(tag.split(":", 1)[1])])]},
        )],
    }


def ami_template(matrix: Matrix, row: RowView, directory: Path) -> dict[str, Any]:
    """One amazon-ebs source per architecture of the row's AMI (matrix.yml ami.arches), provisioned alike."""
    ami = _ami_spec(row)
    connect = dict(communicator=q("ssh"), ssh_username=q(ami.ssh_username), ssh_timeout=expr("var.ssh_timeout"))
    timeout = variable("ssh_timeout", "string", "5m", "how long to wait for SSH on the build instance")
    return _ami_build(matrix, row, directory, connect, timeout, ami_provisioners(matrix, row))


def _ami_spec(row: RowView):
    if row.spec.ami is None:
        raise UsageError(f"rows.{row.name}.ami is not set: the row has no AMI target")
    return row.spec.ami


def _provisioned_name(row: RowView, arch: str) -> str:
    """The amazon-ebs source of one architecture: worker-arm64 (Windows: windows-amd64)."""
    return f"{'windows' if row.spec.family == 'windows' else 'worker'}-{arch}"


def ami_arches(row: RowView, arch: str | None = None) -> list[str]:
    """The architectures an AMI build makes: all the row's AMI architectures (None, "all"), or the one named."""
    built = list(_ami_spec(row).builds)
    if arch in (None, "all"):
        return built
    if arch not in built:
        why = "" if arch not in arches.ARCHES or arches.get(arch).ec2 else f"; EC2 has no {arch} instances"
        raise UsageError(f"--arch {arch}: {row.name}'s AMI is built for {', '.join(built)} (matrix.yml "
                         f"rows.{row.name}.ami){why}")
    return [arch]


def _ami_build(matrix: Matrix, row: RowView, directory: Path, connect: dict[str, Any], timeout: dict,
               provisioners: list[dict]) -> dict[str, Any]:
    """An amazon-ebs source per architecture, each provisioned over its communicator (`connect`, whose timeout
    is a variable) by the same provisioners."""
    ami = _ami_spec(row)
    names = {arch: _provisioned_name(row, arch) for arch in ami.builds}
    return {
        "variable": [*_ami_variables(row, ami), *_common_variables(matrix, row, directory), timeout],
        "source": [block("amazon-ebs", name, **connect, **_ami_common(row, ami, arch)) for arch, name in names.items()],
        "build": [block(
            name=q("fleetbake"),
            sources=[q(f"source.amazon-ebs.{name}") for name in names.values()],
            provisioner=provisioners,
            **{"post-processor": [block("manifest", output=q("manifest.json"), strip_path=True)]},
        )],
    }


def _ami_variables(row: RowView, ami) -> list[dict]:
    per_arch = [variable(f"{what}_{arch}", "string", default, f"{arch}: {description}")
                for arch, build in ami.builds.items()
                for what, default, description in (("instance_type", build.instance_type, "from matrix.yml"),
                                                   ("inputs_hash", "unknown", "fleetbake inputs hash, for the tags"))]
    return [
        variable("region", "string", "us-east-1", "AWS region"),
        variable("profile", "string", "", "AWS profile (credentials stay in ~/.aws or the environment)"),
        variable("configuration", "string", next(iter(row.configurations)), "the configuration, for the AMI's name and tags"),
        *per_arch,
        variable("ec2_endpoint", "string", "", "EC2 API endpoint override (tests use moto on loopback)"),
    ]


def _ami_common(row: RowView, ami, arch: str) -> dict[str, Any]:
    build = ami.builds[arch]
    tags = {q("Name"): f'"fleetbake-{row.name}-{arch}-${{var.configuration}}"', q("fleetbake"): q("true"),
            q("fleetbake-row"): q(row.name), q("fleetbake-arch"): q(arch),
            q("fleetbake-configuration"): expr("var.configuration"),
            q("fleetbake-inputs-hash"): expr(f"var.inputs_hash_{arch}"),
            q("fleetbake-date"): expr('formatdate("YYYY-MM-DD", timestamp())')}
    return dict(
        region=expr("var.region"),
        profile=expr("var.profile"),
        instance_type=expr(f"var.instance_type_{arch}"),
        ami_name=f'"fleetbake-{row.name}-{arch}-${{var.configuration}}-' + '${formatdate("YYYYMMDDhhmmss", timestamp())}"',
        source_ami_filter=[block(
            filters={q("name"): q(build.source_ami_name), q("virtualization-type"): q("hvm"),
                     q("root-device-type"): q("ebs"), q("architecture"): q(arches.get(arch).ec2)},
            owners=[q(ami.source_ami_owner)],
            most_recent=True,
        )],
        launch_block_device_mappings=[block(device_name=q("/dev/sda1" if row.spec.family == "windows" else "/dev/xvda"),
                                            volume_size=ami.volume_gb, volume_type=q("gp3"),
                                            iops=3000, throughput=125, delete_on_termination=True)],
        tags=tags,
        run_tags={q("fleetbake"): q("true"), q("fleetbake-row"): q(row.name), q("fleetbake-arch"): q(arch)},
        custom_endpoint_ec2=expr("var.ec2_endpoint"),
        skip_region_validation=expr('var.ec2_endpoint != ""'),
    )


def ami_provisioners(matrix: Matrix, row: RowView) -> list[dict]:
    """Everything an AMI gets: the Dockerfile's plan (boto3 added to the worker's venv, for
    WORKERPASS_SSM; the AMI's own uid), then the worker as a systemd service that reads its
    name and password at boot, never baked in."""
    plan = families.plan(row, uid=_ami_spec(row).uid, pip_extras="boto3")
    return linux_provisioners(matrix, row, plan, sudo=True, extra=(families.ami_service(plan.runtime),))


# What the official Debian and Fedora cloud images have and a bootstrapped base lacks.
REHEARSAL_BASE = {
    "debian": "apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -qq -y --no-install-recommends"
              " systemd systemd-sysv sudo dbus >/dev/null && rm -rf /var/lib/apt/lists/*",
    "fedora": "dnf install -q -y systemd sudo && dnf clean all",
}


def rehearsal_template(matrix: Matrix, row: RowView, directory: Path) -> dict[str, Any]:
    """The AMI's provisioners, verbatim, on a local container that boots systemd: try the
    AMI's provisioning and its boot-time units before paying for an EC2 build."""
    changes = ['ENTRYPOINT ["/sbin/init"]', 'CMD []', "ENV container=docker",
               f"LABEL io.fleetbake.row={row.name} io.fleetbake.builder=packer-ami-rehearsal"]
    # The cloud image's login user, as cloud-init creates it at first boot (uid 1000).
    login_user = f"useradd --create-home --user-group --uid 1000 {_ami_spec(row).ssh_username}"
    provisioners = [block("shell", inline=[q(REHEARSAL_BASE[row.spec.family]), q(login_user)]),
                    *ami_provisioners(matrix, row)]
    return _docker_build(row, "rehearsal", [q(c) for c in changes], provisioners, identity.rehearsal_image_tag(row),
                         _common_variables(matrix, row, directory))


def provisioned_sources(row: RowView, target: str, arch: str | None = None) -> list[str]:
    """`-only` for `--build`: the AMI template's sources of `arch` (None, "all": every one), named as Packer
    1.6.6 matches them (`<build>.<type>.<name>`; a bare `amazon-ebs.<name>` silently matches nothing)."""
    if target != "ami":
        return []
    return [f"fleetbake.amazon-ebs.{_provisioned_name(row, name)}" for name in ami_arches(row, arch)]


def windows_template(matrix: Matrix, row: RowView, directory: Path) -> dict[str, Any]:
    """Windows Server AMI: WinRM, the Windows Dockerfile's plan as file and powershell provisioners, then
    images/windows/ami/Install-AmiWorker.ps1: the buildbot user, its firewall rule, the boot tasks."""
    connect = dict(communicator=q("winrm"), winrm_username=q("Administrator"), winrm_use_ssl=True, winrm_insecure=True,
                   winrm_timeout=expr("var.winrm_timeout"), user_data_file=_repo("windows/ami/winrm-bootstrap.ps1"))
    timeout = variable("winrm_timeout", "string", "30m", "how long to wait for WinRM on the build instance")
    provisioners = []
    for layer in families.plan(row).layers:
        for copy in layer.copies:
            folders = [s for s in copy.sources if s.endswith("/")]
            singles = [s for s in copy.sources if not s.endswith("/")]
            provisioners += [block("file", source=_context(s), destination=q(f"{copy.dest}/")) for s in folders]
            if singles:
                provisioners.append(block("file", sources=[_context(s) for s in singles], destination=q(f"{copy.dest}/")))
        if layer.runs:
            provisioners.append(block("powershell", inline=[q(run.line(windows=True)) for run in layer.runs]))
    provisioners += [
        block("file", source=_repo("windows/ami/"), destination=q(f"{families.WINDOWS_HOME}/ami/")),
        block("windows-restart"),
        # Last: it registers the task that closes Packer's WinRM listener at the fleet instance's first boot.
        block("powershell", inline=[q(f"{families.WINDOWS_HOME}/ami/Install-AmiWorker.ps1")]),
    ]
    return _ami_build(matrix, row, directory, connect, timeout, provisioners)


PLUGINS = {"packer": [block(required_plugins={"docker": {"source": q("github.com/hashicorp/docker"), "version": q(">= 1.0.0")},
                                              "amazon": {"source": q("github.com/hashicorp/amazon"), "version": q(">= 1.3.0")}})]}


# --- writing, checking, running -------------------------------------------------------

def targets(row: RowView) -> tuple[str, ...]:
    """The Packer targets a row has: Windows has an AMI only (no Windows container engine here)."""
    if row.spec.family == "windows":
        return ("ami",)
    return TARGETS if row.spec.ami else ("docker",)


def _check_target(row: RowView, target: str, config: str | None = None, arch: str | None = None) -> None:
    if config is not None and config not in row.configurations:
        raise UsageError(f"--config {config!r}: {row.name} has {', '.join(row.configurations)}")
    if target not in TARGETS:
        raise UsageError(f"--target {target!r}: expected one of {', '.join(TARGETS)}")
    if row.spec.family == "windows" and target != "ami":
        raise UsageError(f"--target {target}: {row.name} has an AMI target only (no Windows container engine here)")
    if target != "docker":
        _ami_spec(row)
    if target == "ami":
        ami_arches(row, arch)
    elif arch not in (None, arches.native().name):
        raise UsageError(f"--arch {arch}: --target {target} builds this host's architecture "
                         f"({arches.native().name}); --target ami builds each of the AMI's")


def render_templates(matrix: Matrix, row: RowView) -> dict[str, bytes]:
    """Every Packer file of the row, `<target>/<name>` -> formatted HCL (in memory: for render and --check)."""
    root = paths.packer_dir(matrix)
    makers = {"docker": docker_template, "ami-rehearsal": rehearsal_template,
              "ami": windows_template if row.spec.family == "windows" else ami_template}
    templates = {}
    for target in targets(row):
        directory = root / row.name / target
        templates[f"{target}/{target}.pkr.hcl"] = makers[target](matrix, row, directory)
        templates[f"{target}/plugins.pkr.hcl"] = PLUGINS
    head = render.header(matrix, row) + "\n"
    return _format({name: head + _dumps(data) for name, data in templates.items()})


def _dumps(data: dict[str, Any]) -> str:
    text = hcl2.dumps(data)
    hcl2.loads(text)  # python-hcl2 must read back what it wrote
    return text


def _format(texts: dict[str, str]) -> dict[str, bytes]:
    """`packer fmt` lays the files out (in a scratch folder: it wants the .pkr.hcl ending)."""
    with tempfile.TemporaryDirectory(prefix="fleetbake-packer-") as scratch:
        for name, text in texts.items():
            (Path(scratch) / name.replace("/", "__")).write_text(text)
        _packer(["fmt", "."], cwd=Path(scratch))
        return {name: (Path(scratch) / name.replace("/", "__")).read_bytes() for name in texts}


def write(matrix: Matrix, row: RowView, target: str, config: str | None = None, log: Log = print,
          arch: str | None = None) -> Path:
    """Render the row (images/<family>/<row>/ and packer/<row>/, as `invoke render`) and return `target`'s template."""
    _check_target(row, target, config, arch)
    render.render(matrix, [row], log=log)
    template = paths.packer_dir(matrix) / row.name / target / f"{target}.pkr.hcl"
    log(f"packer: {template}")
    return template


def check_row(matrix: Matrix, row: RowView) -> list[str]:
    templates = render_templates(matrix, row)
    out = paths.packer_dir(matrix) / row.name
    return render.diff_context({name: render.RenderedFile(content) for name, content in templates.items()}, out)


def _packer(args: list[str], cwd: Path, env: dict[str, str] | None = None, stream: Log | None = None) -> str:
    binary = shutil.which("packer")
    if binary is None:
        raise PackerError("packer is not installed (apt-get install packer, or run scripts/setup.sh)")

    def errored(result: proc.Result) -> str | None:  # packer build names the failing build and its cause
        return next((line.strip() for line in result.output.splitlines() if " errored after " in line), None)

    # stderr joins stdout: packer's cause is its last line whichever stream it went to
    return proc.run([binary, *args], what=f"packer {args[0]}", cwd=cwd, stream=stream or (lambda _: None),
                    env={**os.environ, "CHECKPOINT_DISABLE": "1", **(env or {})}, reason=errored, error=PackerError)


def validate(template: Path) -> str:
    """Packer 1.6.6 is given the template file alone (it rejects plugins.pkr.hcl)."""
    return _packer(["validate", template.name], cwd=template.parent)


def fmt_check(template: Path) -> None:
    _packer(["fmt", "-check", template.name], cwd=template.parent)


def workdir(row: RowView, target: str) -> Path:
    """Where a build runs and leaves manifest.json and handoff.json: never the committed packer/."""
    return paths.build_dir() / "packer" / row.name / target


def build(template: Path, only: list[str] | None = None, variables: dict[str, str] | None = None,
          env: dict[str, str] | None = None, log: Log = print, cwd: Path | None = None) -> str:
    args = ["build", "-color=false"]
    if only:
        args.append(f"-only={','.join(only)}")
    for key, value in (variables or {}).items():
        args.append(f"-var={key}={value}")
    cwd = cwd or template.parent
    cwd.mkdir(parents=True, exist_ok=True)
    return _packer([*args, str(template.resolve())], cwd=cwd, env=env, stream=log)


def context_variable(template: Path, context_dir: Path) -> str:
    """var.context for a build context elsewhere (build/contexts/<row>/): relative to the template's folder."""
    return os.path.relpath(context_dir.resolve(), template.parent.resolve())


def handoff(work: Path, row: RowView, region: str, arch: str | None = None) -> dict[str, Any]:
    """What the devguide says the admins need, per architecture built: instance size, region, AMI ID.
    Read from the last run's manifest.json entries (one per source that made an AMI)."""
    try:
        manifest = json.loads((work / "manifest.json").read_text())
    except FileNotFoundError:
        raise PackerError(f"packer build left no {work / 'manifest.json'}: no AMI was made") from None
    made = {entry["name"]: entry["artifact_id"] for entry in manifest["builds"]
            if entry.get("packer_run_uuid") == manifest.get("last_run_uuid")}
    amis: dict[str, dict[str, str]] = {}
    regions = set()
    for name in ami_arches(row, arch):
        artifact = made.get(_provisioned_name(row, name))  # "us-east-1:ami-0123..."
        if artifact is None:
            continue
        match = re.fullmatch(r"([a-z0-9-]+):(ami-[0-9a-f]+)", artifact)
        if not match:
            raise PackerError(f"unexpected artifact id in manifest.json: {artifact!r}")
        regions.add(match.group(1))
        amis[name] = {"ami_id": match.group(2), "instance_type": row.spec.ami.builds[name].instance_type,
                      "architecture": arches.get(name).ec2}  # EC2's word, as the instance type's page says it
    if not amis:
        raise PackerError(f"{work / 'manifest.json'} names no AMI of {row.name} ({', '.join(ami_arches(row, arch))}) "
                          "from the last packer build")
    info = {"worker_row": row.name, "region": ",".join(sorted(regions)), "amis": amis}
    files.write_text(work / "handoff.json", json.dumps(info, indent=2) + "\n")
    return info


def build_variables(matrix: Matrix, row: RowView, target: str, template: Path, *, config: str | None = None,
                    ca_bundle: str | None = None, log: Log = print, arch: str | None = None) -> dict[str, str]:
    """What a build of this host passes: the assembled context (extra CA certificates added) and,
    for the docker target, every label `invoke build` gives its image."""
    context = render.render_row(matrix, row, render.ca_certs_from(ca_bundle))
    render.write_context(context, paths.context_dir(row.name))
    variables = {"context": context_variable(template, paths.context_dir(row.name))}
    origin = identity.row_source(matrix, row)
    if row.spec.family != "windows":
        variables["source_date_epoch"] = str(origin.epoch)
    if target == "ami":
        ami = _ami_spec(row)
        variables["configuration"] = config or next(iter(row.configurations))
        for name in ami_arches(row, arch):  # each architecture's own source AMI
            variables[f"inputs_hash_{name}"] = identity.inputs_hash(
                render.context_digest(context), f"ami:{ami.source_ami_owner}/{ami.builds[name].source_ami_name}/{name}")
    else:
        from fleetbake.pipeline import base  # Docker only for the docker targets

        base_id = base.ensure_base(row, log=log, epoch=origin.epoch)
        if target == "docker":
            inputs = identity.inputs_hash(render.context_digest(context), base_id, origin)
            variables["labels"] = families.label_arguments(sorted(identity.labels(row, inputs, base_id, origin).items()))
    return variables


def committed(matrix: Matrix, row: RowView, target: str, config: str | None = None, arch: str | None = None) -> Path:
    """`target`'s template as committed in packer/<row>/ (render --check holds it equal to a fresh render)."""
    _check_target(row, target, config, arch)
    template = paths.packer_dir(matrix) / row.name / target / f"{target}.pkr.hcl"
    if not template.is_file():
        raise UsageError(f"{template} is missing: run `invoke render --os {row.name}`")
    return template


def run(matrix: Matrix, row: RowView, target: str, *, config: str | None = None, run_build: bool = False,
        region: str = "us-east-1", profile: str = "", run_validate: bool = True, ca_bundle: str | None = None,
        render_first: bool = True, log: Log = print, arch: str | None = None) -> dict[str, Any] | None:
    """`invoke packer`: write the row's templates, validate one, and with `build` run it (AMI: the handoff, per
    architecture; `arch` None or "all" builds every one of the row's AMI, a name that one alone).
    `render_first=False` builds the committed template as it is and writes nothing into the checkout."""
    template = (write(matrix, row, target, config, log=log, arch=arch) if render_first
                else committed(matrix, row, target, config, arch))
    if run_validate:
        validate(template)
        log(f"packer validate: {template.name} is valid")
    if not run_build:
        return None
    variables = build_variables(matrix, row, target, template, config=config, ca_bundle=ca_bundle, log=log, arch=arch)
    if target == "ami":
        variables.update(region=region, profile=profile)
    work = workdir(row, target)
    (work / "manifest.json").unlink(missing_ok=True)  # Packer appends to it: only this run's AMIs are handed off
    failed = None
    try:
        build(template, provisioned_sources(row, target, arch), variables, log=log, cwd=work)
    except PackerError as exc:
        if target != "ami" or not (work / "manifest.json").exists():
            raise
        failed = exc  # one architecture failed: hand off the AMIs the others made, then fail
    if target != "ami":
        return None
    info = handoff(work, row, region, arch)
    for name, ami in info["amis"].items():
        log(f"{row.name} {name}: {ami['ami_id']} in {info['region']} ({ami['instance_type']}, {ami['architecture']})")
    log(f"hand this to the fleet admins (also in {work / 'handoff.json'}):")
    log(json.dumps(info, indent=2))
    if failed:
        raise failed
    return info
