#!/bin/bash
# Generated from matrix.yml (row fedora-44) by fleetbake: do not edit. Change the matrix, images/ or fleetbake/worker/, then run `invoke render`.
##  File:  configure-dnf.sh
##  Desc:  Make dnf lean and unattended: no weak dependencies, no docs, retries.
set -euo pipefail

conf=/etc/dnf/dnf.conf
for setting in install_weak_deps=False tsflags=nodocs retries=5 keepcache=False; do
    grep -q "^${setting%%=*}=" "$conf" && sed -i "s/^${setting%%=*}=.*/$setting/" "$conf" || echo "$setting" >> "$conf"
done
