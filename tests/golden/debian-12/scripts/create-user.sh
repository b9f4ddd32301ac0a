#!/bin/bash
# Generated from matrix.yml (row debian-12) by fleetbake: do not edit. Change the matrix or images/, then run `invoke render`.
##  File:  create-user.sh
##  Desc:  Create the unprivileged build user; its home is the buildarea (the worker's basedir).
set -euo pipefail

user=${WORKER_USER:?WORKER_USER is required}
uid=${WORKER_UID:?WORKER_UID is required}
buildarea=${BUILDAREA:-/buildarea}

if ! getent passwd "$user" >/dev/null; then
    if getent passwd "$uid" >/dev/null || getent group "$uid" >/dev/null; then
        echo "create-user: uid/gid $uid is taken; letting the system choose one for $user" >&2
        useradd --user-group --home-dir "$buildarea" --no-create-home --shell /bin/bash "$user"
    else
        groupadd --gid "$uid" "$user"
        useradd --uid "$uid" --gid "$uid" --home-dir "$buildarea" --no-create-home --shell /bin/bash "$user"
    fi
fi
# Owned by the user in the image, so a fresh named volume starts out owned by it too.
install -d -o "$user" -g "$user" -m 0750 "$buildarea"
passwd --lock "$user" >/dev/null
