#!/bin/bash
# Unpack Debian 12's Packer 1.6.6 (its .deb, pinned by version and SHA-256) into a folder, not system-wide:
# the templates and `packer fmt` output are 1.6.6's, and CI runners put a modern Packer on PATH.
set -euo pipefail

# Debian 12's packer package: `apt-cache show packer` (its SHA256 field comes from the signed index).
version=1.6.6+ds2-1+b1
sha256=7b690f62b30ba76e14769c4d40a2b883e1be6807c95f7fca22190c6f319c18c5
mirror=${DEBIAN_MIRROR:-https://deb.debian.org/debian}
url="$mirror/pool/main/p/packer/packer_${version}_amd64.deb"

fail() { echo "install-debian-packer: $*" >&2; exit 1; }

[ "$(uname -m)" = x86_64 ] || fail "the pinned .deb is amd64; this machine is $(uname -m)"
command -v dpkg-deb >/dev/null || fail "dpkg-deb is not installed"

dest=${1:-}
if [ -z "$dest" ]; then
    if [ -n "${RUNNER_TEMP:-}" ]; then
        dest="$RUNNER_TEMP/debian-packer"
    else
        dest=$(mktemp -d "${TMPDIR:-/tmp}/debian-packer.XXXXXX")
    fi
fi

download=$(mktemp -d)
trap 'rm -rf "$download"' EXIT
deb="$download/packer.deb"
echo "install-debian-packer: $url" >&2
curl -fsSL --retry 3 -o "$deb" "$url"
actual=$(sha256sum "$deb" | cut -d' ' -f1)
[ "$actual" = "$sha256" ] || fail "refusing $url: SHA-256 $actual, pinned $sha256"

mkdir -p "$dest"
dest=$(cd "$dest" && pwd)
dpkg-deb -x "$deb" "$dest"
bin="$dest/usr/bin"
reported=$(CHECKPOINT_DISABLE=1 "$bin/packer" version)
reported=${reported%%$'\n'*}
[ "$reported" = "Packer v${version%%+*}" ] || fail "$bin/packer reports '$reported', expected Packer v${version%%+*}"
echo "install-debian-packer: $reported in $bin" >&2

if [ -n "${GITHUB_PATH:-}" ]; then
    echo "$bin" >>"$GITHUB_PATH"  # later steps of the job find this packer first
fi
echo "$bin"
