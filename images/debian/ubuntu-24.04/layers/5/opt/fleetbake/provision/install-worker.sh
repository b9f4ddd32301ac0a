#!/bin/bash
# Generated from matrix.yml (row ubuntu-24.04) by fleetbake: do not edit. Change the matrix, images/ or fleetbake/worker/, then run `invoke render`.
##  File:  install-worker.sh
##  Desc:  Install the pinned buildbot-worker into its own virtualenv, apart from any Python being built.
set -euo pipefail

version=${BUILDBOT_WORKER_VERSION:?BUILDBOT_WORKER_VERSION is required}
venv=${WORKER_VENV:-/opt/buildbot-worker}

# pip trusts certifi by default; the system bundle also has any extra CA.
for bundle in /etc/ssl/certs/ca-certificates.crt /etc/pki/tls/certs/ca-bundle.crt; do
    if [ -f "$bundle" ]; then
        export PIP_CERT="$bundle"
        break
    fi
done
export PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_ROOT_USER_ACTION=ignore

python3 -m venv "$venv"
# WORKER_PIP_EXTRAS: more packages for the worker's own venv (AMIs add boto3 for SSM).
# shellcheck disable=SC2086 # a space-separated list on purpose
"$venv/bin/pip" install --quiet "buildbot-worker==$version" ${WORKER_PIP_EXTRAS:-}
ln -sf "$venv/bin/buildbot-worker" /usr/local/bin/buildbot-worker
echo "install-worker: buildbot-worker $("$venv/bin/buildbot-worker" --version | awk '{print $NF}') in $venv"
