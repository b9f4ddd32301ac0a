#!/bin/bash
# Generated from matrix.yml (row ubuntu-24.04) by fleetbake: do not edit. Change the matrix, images/ or fleetbake/worker/, then run `invoke render`.
##  File:  install-ca.sh
##  Desc:  Trust extra CA certificates (a corporate TLS proxy) system-wide, for apt, pip and CPython's ssl.
set -euo pipefail

src=${1:?usage: install-ca.sh DIR_OF_CRT_FILES}
shopt -s nullglob
certs=("$src"/*.crt)
if ((${#certs[@]} == 0)); then
    echo "install-ca: no extra CA certificates"
    exit 0
fi
if command -v update-ca-certificates >/dev/null; then
    install -d /usr/local/share/ca-certificates/fleetbake
    install -m 0644 "${certs[@]}" /usr/local/share/ca-certificates/fleetbake/
    update-ca-certificates
elif command -v update-ca-trust >/dev/null; then
    install -m 0644 "${certs[@]}" /etc/pki/ca-trust/source/anchors/
    update-ca-trust extract
else
    echo "install-ca: no update-ca-certificates or update-ca-trust on this system" >&2
    exit 1
fi
echo "install-ca: trusted ${#certs[@]} extra CA certificate(s)"
