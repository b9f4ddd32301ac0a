#!/bin/bash
# Generated from matrix.yml (row ubuntu-24.04) by fleetbake: do not edit. Change the matrix, images/ or fleetbake/worker/, then run `invoke render`.
##  File:  normalize-layer.sh
##  Desc:  The end of every Dockerfile RUN: the same inputs give the same layer (times from SOURCE_DATE_EPOCH).
set -euo pipefail
started=${1:?usage: normalize-layer.sh STARTED_EPOCH_SECONDS}
epoch=${SOURCE_DATE_EPOCH:?SOURCE_DATE_EPOCH is required: the build passes the commit time of its inputs}
# Logs and caches that record when they ran: emptied, not deleted, since deleting a file of an
# earlier layer leaves a whiteout stamped with the build's clock.
for file in /var/log/dpkg.log /var/log/alternatives.log /var/log/apt/history.log /var/log/apt/term.log \
    /var/log/apt/eipp.log.xz /var/cache/ldconfig/aux-cache /var/log/dnf.log /var/log/dnf.librepo.log \
    /var/log/dnf.rpm.log /var/log/hawkey.log; do
    if [ -f "$file" ] && [ "$(stat -c %Y "$file")" -ge "$started" ]; then
        : > "$file"
    fi
done
# What this RUN wrote or changed has a time from its first second on; what it only read keeps its own.
# The container's own mounts (/proc, /sys, /dev, the engine's /etc/hosts and friends) are not the layer's.
find / -xdev \( -path /proc -o -path /sys -o -path /dev -o -path /etc/hosts -o -path /etc/hostname \
    -o -path /etc/resolv.conf \) -prune -o -newermt "@$((started - 1))" -print0 \
    | xargs -0 --no-run-if-empty touch --no-dereference --date="@$epoch"
