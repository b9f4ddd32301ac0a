#!/bin/bash
# Generated from matrix.yml (row fedora-44) by fleetbake: do not edit. Change the matrix, images/ or fleetbake/worker/, then run `invoke render`.
##  File:  install-packages.sh
##  Desc:  Install CPython's build dependencies with `dnf builddep python3` (the devguide's way) plus the listed packages.
set -euo pipefail

list=${1:?usage: install-packages.sh PACKAGES_FILE}
mapfile -t packages < <(sed -e 's/#.*//' -e 's/[[:space:]]//g' -e '/^$/d' "$list")

dnf -y upgrade --refresh
dnf -y install 'dnf-command(builddep)'
dnf -y builddep python3
dnf -y install "${packages[@]}"
dnf clean all
rm -rf /var/cache/dnf/*
