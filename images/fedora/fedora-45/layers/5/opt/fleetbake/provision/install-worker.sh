#!/bin/bash
# Generated from matrix.yml (row fedora-45) by fleetbake: do not edit. Change the matrix, images/ or fleetbake/worker/, then run `invoke render`.
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

# The compiled dependencies (cryptography, msgpack, zope.interface) are the distribution's packages,
# built for every architecture it ships; PyPI has wheels for some architectures only (none of
# cryptography for s390x, nor of msgpack for ppc64le). The venv sees them, pinned to the installed
# versions so that pip never swaps in a wheel one architecture has and another lacks; the rest are
# pure-Python wheels pinned in $requirements: the same worker on every architecture.
python3 -m venv --system-site-packages "$venv"
system_pins=$(mktemp)
trap 'rm -f "$system_pins"' EXIT
"$venv/bin/python" - "$venv" > "$system_pins" <<'PY'
import importlib.metadata, os, re, sys
venv = os.path.realpath(sys.argv[1])
pep440 = re.compile(r"v?(\d+!)?\d+(\.\d+)*((a|b|rc)\d+)?(\.post\d+)?(\.dev\d+)?(\+[a-z0-9]+(\.[a-z0-9]+)*)?", re.I)
seen = set()
for dist in importlib.metadata.distributions():  # in import order: the first of a name is the one imported
    name = re.sub(r"[-_.]+", "-", dist.metadata["Name"] or "").lower()
    if not name or name in seen:
        continue
    seen.add(name)
    # The venv's own (pip, setuptools) pip may replace; pip cannot read a pin of a version PEP 440 does not know.
    if not os.path.realpath(str(dist.locate_file(""))).startswith(venv + os.sep) and pep440.fullmatch(dist.version):
        print(f"{name}=={dist.version}")
PY
# WORKER_PIP_EXTRAS: more packages for the worker's own venv (AMIs add boto3 for SSM).
# shellcheck disable=SC2086 # a space-separated list on purpose
"$venv/bin/pip" install --quiet --only-binary :all: --constraint "$requirements" --constraint "$system_pins" \
    "buildbot-worker==$version" ${WORKER_PIP_EXTRAS:-}
"$venv/bin/pip" check
ln -sf "$venv/bin/buildbot-worker" /usr/local/bin/buildbot-worker
echo "install-worker: buildbot-worker $("$venv/bin/buildbot-worker" --version | awk 'NR == 1 {print $NF}') in $venv"
