#!/bin/bash
# Generated from matrix.yml (row debian-13) by fleetbake: do not edit. Change the matrix, images/ or fleetbake/worker/, then run `invoke render`.
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
# A certificate the distribution already trusts (a bundle passed whole) is not added again: the trust is the
# same, and each added one costs update-ca-certificates processes, slow under emulation.
given=${#certs[@]}
for bundle in /etc/ssl/certs/ca-certificates.crt /etc/pki/tls/certs/ca-bundle.crt; do
    if [ -f "$bundle" ]; then
        # Each file with a certificate the bundle lacks (or with none awk can read) is kept.
        new=$(mktemp)
        awk -v bundle="$bundle" '
            FNR == 1 { body = ""; if (FILENAME != bundle) { keep[FILENAME] = 1; read[FILENAME] = 0 } }
            /-----BEGIN CERTIFICATE-----/ { inside = 1; body = ""; next }
            /-----END CERTIFICATE-----/ {
                inside = 0
                if (FILENAME == bundle) known[body] = 1
                else { if (!read[FILENAME]) keep[FILENAME] = 0; read[FILENAME] = 1; if (!(body in known)) keep[FILENAME] = 1 }
                next
            }
            inside { gsub(/[ \t\r]/, ""); body = body $0 }
            END { for (file in keep) if (keep[file]) print file }' "$bundle" "${certs[@]}" > "$new"
        mapfile -t certs < <(sort "$new")
        rm -f "$new"
        break
    fi
done
if ((${#certs[@]} == 0)); then
    echo "install-ca: all $given extra CA certificate(s) are already trusted by the distribution"
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
echo "install-ca: trusted ${#certs[@]} extra CA certificate(s); $((given - ${#certs[@]})) more given are the distribution's already"
