#!/bin/bash
# Generated from matrix.yml (row debian-12) by fleetbake: do not edit. Change the matrix, images/ or fleetbake/worker/, then run `invoke render`.
##  File:  create-user.sh
##  Desc:  Create the dedicated, unprivileged build user; its home is the buildarea (the worker's basedir).
set -euo pipefail

user=${WORKER_USER:?WORKER_USER is required}
uid=${WORKER_UID:?WORKER_UID is required}
buildarea=${BUILDAREA:-/buildarea}

# The build user must be new: reusing an account of the base (root, or ubuntu:24.04's
# `ubuntu` with uid 1000) would run builds as someone else, and a quietly chosen uid
# would not be the one the matrix declares.
if getent passwd "$user" >/dev/null; then
    echo "create-user: the base image already has a user '$user' ($(getent passwd "$user" | cut -d: -f3)); choose another name in the matrix" >&2
    exit 1
fi
if getent group "$user" >/dev/null; then
    echo "create-user: the base image already has a group '$user'; choose another user name in the matrix" >&2
    exit 1
fi
for db in passwd group; do
    if taken=$(getent "$db" "$uid"); then
        echo "create-user: uid/gid $uid is taken in the base image's $db by '${taken%%:*}'; choose another uid in the matrix" >&2
        exit 1
    fi
done
groupadd --gid "$uid" "$user"
useradd --uid "$uid" --gid "$uid" --home-dir "$buildarea" --no-create-home --shell /bin/bash "$user"
# Owned by the user in the image, so a fresh named volume starts out owned by it too.
install -d -o "$user" -g "$user" -m 0750 "$buildarea"
passwd --lock "$user" >/dev/null
