#!/bin/bash
# Generated from matrix.yml (row fedora-45) by fleetbake: do not edit. Change the matrix, images/ or fleetbake/worker/, then run `invoke render`.
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
    # What update-ca-certificates does for new local certificates, for these alone: it would also go through each
    # of the distribution's ~140 again, four programs each, which takes a minute under emulation. Placed where it
    # looks, so that any later run of it keeps them; tests/integration/test_ca_trust.py holds the result to
    # update-ca-certificates --fresh's, byte for byte. A hook that fails fails the build (it would only print an error).
    local_dir=/usr/local/share/ca-certificates/fleetbake etc_dir=/etc/ssl/certs
    install -d "$local_dir"
    added=$(mktemp)
    trap 'rm -f "$added"' EXIT
    for cert in "${certs[@]}"; do  # sorted, as update-ca-certificates adds local ones
        placed=$local_dir/${cert##*/}
        install -m 0644 "$cert" "$placed"
        name=${cert##*/} && name=${name%.crt} && name=${name// /_} && name=${name//[()]/=} && name=${name//,/_}
        ln -sf "$placed" "$etc_dir/$name.pem"
        echo "+$etc_dir/$name.pem" >> "$added"
        awk 1 "$placed" >> "$etc_dir/ca-certificates.crt"  # each ending in a newline
    done
    (cd "$etc_dir" && openssl rehash . > /dev/null)
    run-parts --test -- /etc/ca-certificates/update.d | while read -r hook; do
        "$hook" < "$added"
    done
elif command -v update-ca-trust >/dev/null; then
    install -m 0644 "${certs[@]}" /etc/pki/ca-trust/source/anchors/
    update-ca-trust extract
else
    echo "install-ca: no update-ca-certificates or update-ca-trust on this system" >&2
    exit 1
fi
echo "install-ca: trusted ${#certs[@]} extra CA certificate(s); $((given - ${#certs[@]})) more given are the distribution's already"
