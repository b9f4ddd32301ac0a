#!/bin/bash
##  File:  install-packages.sh
##  Desc:  Install the packages listed in a file (one a line, # comments) with apt, plus security updates.
set -euo pipefail

list=${1:?usage: install-packages.sh PACKAGES_FILE}
mapfile -t packages < <(sed -e 's/#.*//' -e 's/[[:space:]]//g' -e '/^$/d' "$list")
export DEBIAN_FRONTEND=noninteractive

# dpkg's fsync of every file it unpacks is what dominates a build, the more so under QEMU; an image build that
# breaks off is thrown away whole, so it needs none of them (the options here, not in the image's own config).
unsafe=(-o Dpkg::Options::=--force-unsafe-io -o Dpkg::Use-Pty=0)
# ca-certificates' maintainer script runs update-ca-certificates twice in one install: when configured (without
# hooks), then for the trigger it activates (with them), each a pass of several programs per certificate over ~150,
# 14 to 18 s under QEMU. While apt runs, the command is diverted to a stub: its first call runs Debian's, a later one
# is noted, and Debian's runs again after apt only if that pass would do anything: hooks to run, or certificates
# changed since the first.
ucc=/usr/sbin/update-ca-certificates
state=$(mktemp -d)
inputs="ls -lR --time-style=+%s.%N /etc/ca-certificates.conf /usr/share/ca-certificates /usr/local/share/ca-certificates"
undivert() {
    rm -f "$ucc"
    dpkg-divert --quiet --local --rename --remove "$ucc"
}
dpkg-divert --quiet --local --rename --divert "$ucc.fleetbake" --add "$ucc"
trap 'undivert; rm -rf "$state"' EXIT
cat > "$ucc" <<STUB
#!/bin/sh
# install-packages.sh's stand-in while apt runs; Debian's is back after.
if [ -e $state/first ]; then printf '%s\n' "\$*" >> $state/later; exit 0; fi
$ucc.fleetbake "\$@" || exit
$inputs > $state/first 2>/dev/null || true
STUB
chmod 755 "$ucc"
apt-get update
apt-get -y "${unsafe[@]}" upgrade
apt-get install -y --no-install-recommends "${unsafe[@]}" "${packages[@]}"
trap 'rm -rf "$state"' EXIT
undivert
if [ -s "$state/later" ] && [ -x "$ucc" ]; then
    hooks=$(run-parts --test /etc/ca-certificates/update.d 2>/dev/null || true)
    if [ -n "$hooks" ] || [ "$($inputs 2>/dev/null || true)" != "$(cat "$state/first")" ]; then
        # shellcheck disable=SC2046 # --fresh, if a call asked for it
        "$ucc" $(grep -o -m 1 -- --fresh "$state/later" || true)
    fi
fi
apt-get clean
# The package lists, not the base's lock and partial/: deleting those would leave whiteouts, which carry
# the build's clock (every time a build leaves must be the inputs', for a reproducible image).
find /var/lib/apt/lists -mindepth 1 -maxdepth 1 ! -name lock ! -name partial -exec rm -rf {} +
find /var/lib/apt/lists/partial -mindepth 1 -delete
# dpkg's and debconf's backups of their databases: an image is never rolled back through them (1.2 MB).
# Emptied, not deleted (no whiteouts), here rather than in normalize-layer.sh so that Packer's images,
# which share this script, hold the same files.
for file in /var/lib/dpkg/status-old /var/lib/dpkg/diversions-old /var/lib/dpkg/statoverride-old \
    /var/cache/debconf/config.dat-old /var/cache/debconf/templates.dat-old; do
    if [ -f "$file" ]; then : > "$file"; fi
done
