"""Invoke tasks: thin wrappers that parse options and call the fleetbake package.

    invoke matrix [--json]              rows and configurations
    invoke render [--os ROW|all] [--check]  the committed images/<family>/<row>/ and packer/<row>/
    invoke k8s [--os ROW|all] [--check]     the committed Kubernetes manifests k8s/<row>/ (Linux rows)
    invoke base --os ROW [--arch A]     pull or bootstrap the row's base image
    invoke build --os ROW|all [--arch A|all]  render, then build (skips when nothing changed); others under QEMU
    invoke verify --os ROW [--arch A] [--config NAME|all] [--cpython SRC] [--ccache]
    invoke report --os ROW [--arch A]   SBOM, software report, what changed since the last image; the matrix page
    invoke page                         the matrix page alone, from build/reports (no engine)
    invoke diff IMAGE_A IMAGE_B         where two images differ, file by file
    invoke master [--worker NAME[:PASS]] a local Buildbot master to try a worker (--stop stops it)
    invoke status --master URL          is each worker connected? (non-zero when one is not)
    invoke preflight                    this host against the devguide's requirements
    invoke request --os ROW --owner NAME  the fleet's "Add a new worker" issue, its URL and workers.py entry
    invoke publish --os ROW|all --registry HOST[:PORT]/NS [--json]  every architecture's verified, reported image
                                                           and its report, then the row's multi-arch index
    invoke service --platform linux|macos|windows --name W   files for a plain (non-container) host
    invoke packer --target docker|ami|ami-rehearsal --os ROW [--arch A|all] [--build]
                                                           Packer HCL2 from the same matrix and scripts
    invoke aws-zombies [--older-than 6h] [--terminate]     fleet instances left running
    invoke ami-prune --keep N [--delete]                   old fleetbake AMIs and their snapshots
    invoke image-prune [--keep N] [--delete]               old worker images no container uses
    invoke update [--container NAME] [--registry HOST/NS] [--dry-run]   worker containers to their newest
                                                           verified image: drained, health-gated, rolled back
    invoke test                         the unit tests, then the Docker tests (each two at a time)
    invoke bench [--arch A]             speed and size against hand-written baselines (another arch: cold build, size)
    invoke bench-update [--updates N]   what an update costs a worker, against the same drain by hand

Every task takes --matrix FILE (default matrix.yml).
"""

from invoke import task

from fleetbake.cli import friendly, log
from fleetbake.worker.fleet import DEFAULT_ADDRESS

MATRIX_HELP = {"matrix": "matrix file (default matrix.yml)"}
ARCH_HELP = "amd64, arm64, ppc64le, s390x, riscv64 or 'all' (default: this host's own); others run under QEMU"


def _load(matrix):
    from fleetbake.pipeline import matrix as matrix_mod

    return matrix_mod.load(matrix)


@task(help={**MATRIX_HELP, "json": "print JSON (for CI matrices)"})
@friendly
def matrix(c, matrix="matrix.yml", json=False):
    """List the matrix: rows x configurations."""
    m = _load(matrix)
    print(m.to_json() if json else m.table())


@task(help={**MATRIX_HELP, "os": "row name or 'all'",
            "check": "fail if the committed images/<family>/<row>/ or packer/<row>/ differs from a fresh render"})
@friendly
def render(c, os="all", matrix="matrix.yml", check=False):
    """Render the committed Dockerfiles (images/<family>/<row>/) and Packer templates (packer/<row>/)."""
    from fleetbake.pipeline import render as render_mod

    m = _load(matrix)
    rows = m.select(os)
    if check:
        render_mod.check(m, rows, log=log)
    else:
        for folder in render_mod.render(m, rows, log=log):
            log(f"rendered {folder}/")


@task(help={**MATRIX_HELP, "os": "row name or 'all'",
            "check": "fail if the committed k8s/<row>/ differs from a fresh render"})
@friendly
def k8s(c, os="all", matrix="matrix.yml", check=False):
    """Render the committed Kubernetes manifests (k8s/<row>/: a drained, one-replica Deployment and its claims)."""
    from fleetbake.pipeline import k8s as k8s_mod

    m = _load(matrix)
    rows = m.select(os)
    if check:
        k8s_mod.check(m, rows, log=log)
    else:
        for folder in k8s_mod.write(m, rows, log=log):
            log(f"rendered {folder.relative_to(folder.parent.parent)}/")


@task(help={**MATRIX_HELP, "os": "row name or 'all'", "refresh": "pull or bootstrap again even if present",
            "arch": ARCH_HELP})
@friendly
def base(c, os="all", matrix="matrix.yml", refresh=False, arch=None):
    """Pull the row's base image, or bootstrap it from the distribution archive."""
    from fleetbake.pipeline import base as base_mod, identity

    m = _load(matrix)
    for row in m.select(os, arch):
        image = base_mod.ensure_base(row, refresh=refresh, log=log, epoch=identity.row_source(m, row).epoch)
        log(f"base {base_mod.local_ref(row)} ({row.arch}): {image[:19]}")


@task(help={**MATRIX_HELP, "os": "row name or 'all'", "force": "rebuild even if an identical image exists",
            "refresh": "fresh base and distribution packages (nightly)", "ca_bundle": "extra CA certificates (PEM)",
            "arch": ARCH_HELP})
@friendly
def build(c, os="all", matrix="matrix.yml", force=False, refresh=False, ca_bundle=None, arch=None):
    """Render and build worker images with docker-py."""
    from fleetbake.pipeline import build as build_mod

    m = _load(matrix)
    build_mod.build(m, m.select(os, arch), ca_bundle=ca_bundle, force=force, refresh=refresh, log=log)


@task(help={**MATRIX_HELP, "os": "row name", "config": "configuration name or 'all'",
            "cpython": "CPython source: DIR, TARBALL, URL, git:REF or debian:SUITE/PACKAGE (default: the row's)",
            "jobs": "make and test parallelism (default: CPU count)",
            "image": "verify this image instead of fleetbake/worker:<row> (e.g. a Packer build)",
            "ccache": "compile through ccache, on the named volume fleetbake-ccache-<row> (kept between runs)",
            "ccache_volume": "compile through ccache on this named volume instead (implies --ccache)",
            "arch": ARCH_HELP})
@friendly
def verify(c, os="debian-12", matrix="matrix.yml", config="pydebug", cpython=None, jobs=None, image=None, ccache=False,
           ccache_volume=None, arch=None):
    """Compile CPython in the image and run the smoke tests; write build/reports/."""
    from fleetbake.pipeline import verify as verify_mod

    m = _load(matrix)
    if not verify_mod.verify_rows(m, m.select(os, arch), config, cpython, int(jobs) if jobs else None, image, log=log,
                                  ccache=ccache, ccache_volume_name=ccache_volume):
        from invoke import Exit

        raise Exit("error: verification failed", code=1)


@task(help={**MATRIX_HELP, "os": "row name or 'all'", "registry": "HOST[:PORT]/NAMESPACE, e.g. ghcr.io/python",
            "json": "print what was pushed (digests) as JSON on stdout, the log on stderr (for CI)"})
@friendly
def publish(c, registry, os="all", matrix="matrix.yml", json=False):
    """Push each architecture's verified, reported image (<row>-<arch>, <row>-<arch>-<hash>) and its report as an OCI
    artifact, then the row's multi-arch index (<row>, <row>-<date>); nothing unless every architecture is ready
    (token for a registry that wants one: FLEETBAKE_REGISTRY_TOKEN)."""
    from fleetbake.cli import err
    from fleetbake.pipeline import publish as publish_mod

    m = _load(matrix)
    results = publish_mod.publish(m, m.select(os), registry, log=err if json else log)
    if json:
        print(publish_mod.to_json(results))


@task(help={**MATRIX_HELP, "os": "row name", "image": "report on this image ID instead of the row's tag",
            "against": "REGISTRY/NAMESPACE: say what changed since the image published there (as publish pushes it), "
                       "not since the previous verified image here",
            "arch": "the row's image on this architecture (default: this host's own)"})
@friendly
def report(c, os, matrix="matrix.yml", image=None, against=None, arch=None):
    """SBOM, software report and what changed since the previous verified (or --against: published) image; the page."""
    from fleetbake.pipeline import report as report_mod

    m = _load(matrix)
    print(report_mod.report(m, m.one(os, arch), image, log=log, against=against), end="")


@task(positional=["image_a", "image_b"], help={"image_a": "an image (ID or tag)", "image_b": "another image"})
@friendly
def diff(c, image_a, image_b):
    """Where two images differ, file by file (exit 1 when they do): the config, then each layer's files."""
    from invoke import Exit

    from fleetbake.pipeline import imagediff

    if not imagediff.diff(image_a, image_b, log=log):
        raise Exit(code=1)


@task(help=MATRIX_HELP)
@friendly
def page(c, matrix="matrix.yml"):
    """The matrix page, build/reports/index.html, from every record there; no engine (the nightly Pages job)."""
    from fleetbake.pipeline import page as page_mod, record

    log(f"page {page_mod.write(_load(matrix), generated=record.timestamp())}")


@task(iterable=["worker"], help={
    **MATRIX_HELP, "worker": "NAME or NAME:PASSWORD (repeatable; a password is generated if missing)",
    "stop": "stop the master and its git daemon", "cpython": "CPython source for the builds (default: debian-12's)",
    "pb_port": "port workers connect to", "www_port": "web UI and REST API port", "git_port": "git daemon port"})
@friendly
def master(c, worker=None, stop=False, cpython=None, matrix="matrix.yml", pb_port=9989, www_port=8010, git_port=9418):
    """Start (or --stop) a local Buildbot master with the fleet's Unix build, for trying a worker."""
    from fleetbake.devtools import master as master_mod

    if stop:
        master_mod.stop(log=log)
    else:
        master_mod.serve(_load(matrix), worker, cpython, int(pb_port), int(www_port), int(git_port), log=log)


@task(iterable=["worker"], help={"master": "the master's web URL, e.g. https://buildbot.python.org/",
                                 "worker": "worker name (repeatable; default: all)",
                                 "notify_cmd": "command run with each offline worker's name"})
@friendly
def status(c, master, worker=None, notify_cmd=None):
    """Print each worker's connection state; exit 1 when one is offline (for cron)."""
    from invoke import Exit

    from fleetbake.operate import status as status_mod

    code = status_mod.check(master, worker or None, notify_cmd, log=log)
    if code:
        raise Exit(code=code)


@task(help={"master": f"master host:port (default {DEFAULT_ADDRESS})",
            "buildarea": "where the buildarea lives (for the disk check)", "timeout": "seconds per probe"})
@friendly
def preflight(c, master=DEFAULT_ADDRESS, buildarea=".", timeout=5):
    """Check this host against the devguide's requirements (CPUs, memory, disk, outbound ports)."""
    from invoke import Exit

    from fleetbake.worker import preflight as preflight_mod

    code = preflight_mod.main([f"--master={master}", f"--buildarea={buildarea}", f"--timeout={timeout}"])
    if code:
        raise Exit(code=code)


@task(help={**MATRIX_HELP, "os": "the row this worker runs", "owner": "your fleet owner name (the form's Username)",
            "github": "your GitHub login", "email": "where the admins send a new password",
            "full_name": "your name", "name": "worker name suffix: the worker is OWNER-SUFFIX (default: row-machine)",
            "password": "how you get a password: new-owner (default), new-worker or existing; never a password",
            "image": "use this image ID's record (default: the row's last pydebug record in build/reports/)",
            "cpus": "CPUs the worker may use (default: this host's)",
            "memory_gb": "memory the worker may use, GiB (default: this host's)",
            "note": "more for the form's \"Anything special\" field"})
@friendly
def request(c, os, owner, matrix="matrix.yml", github="", email="", full_name="", name="", password="new-owner",
            image=None, cpus=None, memory_gb=None, note=""):
    """Print the fleet's "Add a new worker" issue (text and prefilled URL) and the workers.py entry, with suggested
    parallel_tests and timeout_factor from the row's last verification record."""
    from fleetbake.errors import UsageError
    from fleetbake.operate import request as request_mod

    try:
        cpus = int(cpus) if cpus is not None else None
        memory_gb = float(memory_gb) if memory_gb is not None else None
    except ValueError:
        raise UsageError("--cpus takes a whole number, --memory-gb a number") from None
    row = _load(matrix).one(os)
    req = request_mod.build(row, owner, github=github, email=email, full_name=full_name, suffix=name,
                            password=password, image=image, cpus=cpus, memory_gb=memory_gb, note=note)
    print(req.text())


@task(help={"platform": "linux, macos or windows", "name": "the worker name", "master": "HOST[:PORT]",
            "admin": "contact for info/admin", "user": "the unprivileged user", "buildarea": "worker basedir",
            "venv": "virtualenv with buildbot-worker", "password_file": "file holding the password (never the password)",
            "checkout": "the fleetbake checkout the daily image pruning and update run from (default: this one)",
            "registry": "HOST[:PORT]/NAMESPACE the daily update pulls from (default: where each container's image came from)",
            "out": "output directory (default build/service/<platform>)"})
@friendly
def service(c, platform, name, master=DEFAULT_ADDRESS, admin="", user="buildbot",
            buildarea=None, venv=None, password_file=None, checkout=None, registry="", out=None):
    """Write service files for a plain host: systemd unit + crontab, LaunchDaemon, or Scheduled Task; a daily
    image pruning job (systemd timer, LaunchDaemon, Scheduled Task); and a daily `invoke update` of the worker
    containers (systemd timer, LaunchDaemon)."""
    from fleetbake.operate import service as service_mod

    s = service_mod.settings(platform, name, master, admin, user, buildarea, venv, password_file, checkout, registry)
    for path in service_mod.write(s, out).values():
        log(f"wrote {path}")


@task(help={**MATRIX_HELP, "target": "docker, ami, or ami-rehearsal (the AMI's provisioning on a local systemd container)", "os": "row name", "config": "configuration (AMI name and tags)",
            "build": "run packer build (default: generate and validate only)", "region": "AWS region (ami)",
            "profile": "AWS profile (ami)", "validate": "run packer validate on the template (default on)",
            "ca_bundle": "extra CA certificates (PEM) for the build context",
            "arch": "ami: the AMI architecture to build, or 'all' (default: every one the row's AMI has)"})
@friendly
def packer(c, target="docker", os="debian-12", matrix="matrix.yml", config=None, build=False, region="us-east-1",
           profile="", validate=True, ca_bundle=None, arch=None):
    """Write packer/<row>/ and validate (with --build, run) one target's template."""
    from fleetbake.pipeline import packer as packer_mod

    m = _load(matrix)
    packer_mod.run(m, m.one(os), target, config=config, run_build=build, region=region, profile=profile,
                   run_validate=validate, ca_bundle=ca_bundle, log=log, arch=arch)


@task(iterable=["tag", "key_name"], help={
    "older_than": "age threshold, e.g. 90m, 6h, 2d", "region": "AWS region", "profile": "AWS profile",
    "tag": "KEY=VALUE that marks fleet instances (repeatable; default fleetbake=true)",
    "key_name": "key pair the master launches with (repeatable)", "master": "master URL: skip connected workers",
    "worker_tag": "instance tag holding the worker name", "terminate": "terminate them (default: dry run)"})
@friendly
def aws_zombies(c, older_than="6h", region="us-east-1", profile=None, tag=None, key_name=None, master=None,
                worker_tag="buildbot-worker", terminate=False):
    """List (or --terminate) fleet instances running longer than --older-than."""
    from fleetbake.operate import aws

    aws.zombie_sweep(region, profile, older_than, tag or [], key_name or [], master, worker_tag, terminate, log=log)


@task(help={"keep": "newest AMIs to keep per row, configuration and architecture", "region": "AWS region", "profile": "AWS profile",
            "delete": "deregister and delete snapshots (default: dry run)"})
@friendly
def ami_prune(c, keep=3, region="us-east-1", profile=None, delete=False):
    """Deregister all but the newest --keep fleetbake AMIs per row and architecture, and delete their snapshots."""
    from fleetbake.operate import aws

    aws.ami_sweep(region, profile, int(keep), delete, log=log)


@task(help={"keep": "newest images kept per row (default 1)", "delete": "remove them (default: a dry run)",
            "docker": "the Docker CLI (default: docker on PATH)"})
def image_prune(c, keep=1, delete=False, docker="docker"):
    """Remove old fleetbake worker images that no container uses, keeping the newest of each row."""
    from invoke import Exit

    from fleetbake.operate import prune

    code = prune.main([f"--keep={keep}", f"--docker={docker}", *(["--delete"] if delete else [])])
    if code:
        raise Exit(code=code)


@task(iterable=["container"], help={
    "container": "a worker container (repeatable; default: every fleetbake worker container)",
    "registry": "HOST[:PORT]/NAMESPACE (default: the registry the container's image came from)",
    "drain_timeout": "seconds the running build may take to finish (default 14400)",
    "health_timeout": "seconds the new worker has to connect before it is rolled back (default 180)",
    "force": "past --drain-timeout, stop the old worker anyway (its build is interrupted)",
    "dry_run": "say what would be done, change nothing", "state_dir": "where an update in progress is recorded",
    "retry": "try again an image an earlier update rolled back from",
    "docker": "the Docker CLI (default: docker on PATH)"})
def update(c, container=None, registry=None, drain_timeout=None, health_timeout=None, force=False, dry_run=False,
           state_dir=None, docker="docker", retry=False):
    """Move worker containers to the image their row's registry tag names now, if it passed verification: drained
    through Buildbot's graceful shutdown, recreated with the same settings, rolled back unless it connects."""
    from invoke import Exit

    from fleetbake.operate import update as update_mod

    options = {"--registry": registry, "--drain-timeout": drain_timeout, "--health-timeout": health_timeout,
               "--state-dir": state_dir, "--docker": docker}
    code = update_mod.main([*(f"--container={name}" for name in container or ()),
                            *(f"{k}={v}" for k, v in options.items() if v is not None),
                            *(["--force"] if force else []), *(["--dry-run"] if dry_run else []),
                            *(["--retry"] if retry else [])])
    if code:
        raise Exit(code=code)


@task(help={"unit": "only the fast unit tests", "k": "pytest -k expression",
            "workers": "tests run side by side (default 2; 1 runs them one after another)"})
def test(c, unit=False, k=None, workers=2):
    """Run the test suite: the unit tests, then (unless --unit) the Docker integration tests."""
    from invoke import Exit

    from fleetbake.devtools import suite

    code = suite.run(unit_only=unit, k=k, workers=int(workers), log=log)
    if code:
        raise Exit(code=code)


@task(help={**MATRIX_HELP, "os": "row whose verified image the bench updates to and from",
            "updates": "updates per side, each with a build running (default 5; fewer writes build/bench/updates.md)"})
@friendly
def bench_update(c, os="debian-12", matrix="matrix.yml", updates=5):
    """What `invoke update` costs a worker (seconds disconnected, builds lost, roll-back time) against the same
    drain by hand: the "Updates" section of docs/benchmarks.md."""
    from fleetbake.devtools import update_bench

    m = _load(matrix)
    update_bench.run(m, m.one(os), int(updates), log=log)


@task(help={**MATRIX_HELP, "os": "row to measure",
            "arch": ARCH_HELP.replace(" or 'all'", "") + "; another one measures (a) and (c) alone, under emulation",
            "pairs": "alternating pairs per ratio (default 3; fewer writes build/bench/benchmarks.md)",
            "skip_cold": "skip (a) cold builds and (c) size", "skip_noop": "skip (b) the no-op build",
            "skip_verify": "skip (d) verify", "skip_ccache": "skip (e) the cold and warm ccache compiles",
            "note": "added to the report's method line (other load on the machine, say)"})
@friendly
def bench(c, os="debian-12", matrix="matrix.yml", arch=None, pairs=3, skip_cold=False, skip_noop=False,
          skip_verify=False, skip_ccache=False, note=""):
    """Measure build, no-op, size and verify against hand-written baselines, and warm against cold ccache compiles."""
    from fleetbake.devtools import bench as bench_mod

    m = _load(matrix)
    bench_mod.run(m, m.one(os, arch), skip_cold=skip_cold, log=log, pairs=int(pairs), skip_noop=skip_noop,
                  skip_verify=skip_verify, skip_ccache=skip_ccache, note=note)
