#!/bin/bash
# Generated from matrix.yml (row debian-13) by fleetbake: do not edit. Change the matrix, images/ or fleetbake/worker/, then run `invoke render`.
##  File:  install-worker.sh
##  Desc:  Install the pinned buildbot-worker into its own virtualenv, apart from any Python being built.
set -euo pipefail

version=${BUILDBOT_WORKER_VERSION:?BUILDBOT_WORKER_VERSION is required}
requirements=${WORKER_REQUIREMENTS:?WORKER_REQUIREMENTS is required}
venv=${WORKER_VENV:-/opt/buildbot-worker}

# pip trusts certifi by default; the system bundle also has any extra CA.
for bundle in /etc/ssl/certs/ca-certificates.crt /etc/pki/tls/certs/ca-bundle.crt; do
    if [ -f "$bundle" ]; then
        export PIP_CERT="$bundle"
        break
    fi
done
export PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_ROOT_USER_ACTION=ignore

# The compiled dependencies (cryptography, msgpack, zope.interface) are the distribution's packages, built for
# every architecture it ships; PyPI has wheels for some architectures only (no cryptography for s390x, no
# msgpack for ppc64le). The venv sees the distribution's site-packages through a .pth file, not
# --system-site-packages, which would also put the user's site (HOME is the buildarea, which build steps
# write) on the worker's path. Those packages are pinned to their installed versions so that pip never swaps
# in a wheel one architecture has and another lacks; the rest are pure-Python wheels pinned in $requirements.
# No pip in the venv (the worker never installs anything; 16 MB less): the distribution's own pip wheel, the one
# ensurepip would copy in, runs from where it is, with the venv's Python (so that it installs into the venv).
shopt -s nullglob
wheels=(/usr/share/python-wheels/pip-*.whl)
shopt -u nullglob
if ((${#wheels[@]} == 0)); then
    echo "install-worker: no pip wheel in /usr/share/python-wheels (the distribution's venv support installs it)" >&2
    exit 1
fi
pip_wheel=${wheels[-1]}
python3 -m venv --without-pip "$venv"
purelib=$("$venv/bin/python" -I -c 'import sysconfig; print(sysconfig.get_path("purelib"))')
python3 -I -c 'import site; print("\n".join(site.getsitepackages()))' > "$purelib/distribution.pth"
system_pins=$(mktemp)
trap 'rm -f "$system_pins"' EXIT
"$venv/bin/python" -I - "$pip_wheel" "$requirements" > "$system_pins" <<'PY'
import importlib.metadata, re, sys
wheel, requirements = sys.argv[1:]
sys.path.append(wheel)  # pip's own packaging, to read versions as pip does
from pip._vendor.packaging.version import InvalidVersion, Version
def canonical(name):
    return re.sub(r"[-_.]+", "-", name).lower()
# A name pinned in $requirements is installed into the venv at that version, over the distribution's.
seen = {canonical(line.split("==")[0]) for line in open(requirements) if "==" in line and not line.startswith("#")}
for dist in importlib.metadata.distributions():  # in import order: the first of a name is the one imported
    name = canonical(dist.metadata["Name"] or "")
    if not name or name in seen:
        continue
    seen.add(name)
    if str(dist.locate_file("")).startswith(wheel):
        continue  # the pip that installs
    try:
        print(f"{name}=={Version(dist.version)}")
    except InvalidVersion:  # pip cannot read such a pin (nor install over that distribution)
        pass
PY
# WORKER_PIP_EXTRAS: more packages for the worker's own venv (AMIs add boto3 for SSM).
# shellcheck disable=SC2086 # a space-separated list on purpose
"$venv/bin/python" "$pip_wheel/pip" install --quiet --no-compile --only-binary :all: --constraint "$requirements" \
    --constraint "$system_pins" "buildbot-worker==$version" ${WORKER_PIP_EXTRAS:-}
# The test suites of the worker's dependencies (22 MB, most of it Twisted's) are never run on a worker, nor
# imported by what runs; removed before the byte-compiling, with hash-checked .pyc files (valid whatever time
# normalize-layer.sh gives the sources), without site (its .pth would import setuptools' hook first, which writes
# a time-stamped one), in one process and in a fixed order: marshal's output may depend on what the same process
# compiled before (python/cpython#129724), so a process pool could make two builds differ.
find "$purelib" -mindepth 2 -depth -type d \( -name test -o -name tests \) -exec rm -rf {} +
"$venv/bin/python" -I -S -m compileall -q -j 1 --invalidation-mode checked-hash "$purelib"
# What the worker imports must be satisfied (not `pip check`: it judges every package of the distribution, whose
# metadata need not be complete), and all the venv holds must be pinned: the same worker on every architecture.
# shellcheck disable=SC2086
"$venv/bin/python" -I - "$venv" "$pip_wheel" "$requirements" "buildbot-worker==$version" ${WORKER_PIP_EXTRAS:-} <<'PY'
import importlib.metadata, os, re, sys
venv, wheel, requirements, wanted = os.path.realpath(sys.argv[1]), sys.argv[2], sys.argv[3], sys.argv[4:]
sys.path.append(wheel)
from pip._vendor.packaging.requirements import Requirement
def canonical(name):
    return re.sub(r"[-_.]+", "-", name).lower()
pinned = {canonical(line.split("==")[0]) for line in open(requirements) if "==" in line and not line.startswith("#")}
problems, done, todo = [], set(), [(Requirement(text), None) for text in wanted]
while todo:
    requirement, extra = todo.pop()
    if requirement.marker and not requirement.marker.evaluate({"extra": extra or ""}):
        continue
    key = (canonical(requirement.name), tuple(sorted(requirement.extras)))
    if key in done:
        continue
    done.add(key)
    try:
        dist = importlib.metadata.distribution(requirement.name)
    except importlib.metadata.PackageNotFoundError:
        problems.append(f"{requirement} is not installed")
        continue
    if not requirement.specifier.contains(dist.version, prereleases=True):
        problems.append(f"{requirement} is wanted, {dist.metadata['Name']} {dist.version} is installed")
    for extra in ("", *requirement.extras):
        todo += [(Requirement(text), extra) for text in dist.requires or ()]
for dist in importlib.metadata.distributions():
    name = canonical(dist.metadata["Name"] or "")
    where = os.path.realpath(str(dist.locate_file("")))
    if where.startswith(venv + os.sep) and name not in pinned | {canonical(wanted[0].split("==")[0])}:
        problems.append(f"{dist.metadata['Name']} {dist.version} is in the venv but not pinned in {requirements}")
for problem in problems:
    print(f"install-worker: {problem}", file=sys.stderr)
sys.exit(1 if problems else 0)
PY
ln -sf "$venv/bin/buildbot-worker" /usr/local/bin/buildbot-worker
echo "install-worker: buildbot-worker $("$venv/bin/buildbot-worker" --version | awk 'NR == 1 {print $NF}') in $venv"
