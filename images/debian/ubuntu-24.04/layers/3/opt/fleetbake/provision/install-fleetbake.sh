#!/bin/bash
# Generated from matrix.yml (row ubuntu-24.04) by fleetbake: do not edit. Change the matrix, images/ or fleetbake/worker/, then run `invoke render`.
##  File:  install-fleetbake.sh
##  Desc:  Put fleetbake.worker (copied to /opt/fleetbake) on the import path of the system Python, which runs the root supervisor, and of the worker venv, which runs buildbot.tac.
set -euo pipefail

home=${FLEETBAKE_HOME:-/opt/fleetbake}
venv=${WORKER_VENV:-/opt/buildbot-worker}

for python in /usr/bin/python3 "$venv/bin/python3"; do
    purelib=$("$python" -c 'import sysconfig; print(sysconfig.get_path("purelib"))')
    mkdir -p "$purelib"
    echo "$home" > "$purelib/fleetbake.pth"
    # The image's own copy, and no namesake that an installed distribution put first.
    found=$("$python" -I -c 'import fleetbake.worker.entrypoint as e; print(e.__file__)')
    case "$found" in
        "$home"/*) ;;
        *) echo "install-fleetbake: $python imports fleetbake.worker from $found, not from $home" >&2; exit 1 ;;
    esac
done
echo "install-fleetbake: fleetbake.worker imported from $home by the system Python and $venv"
