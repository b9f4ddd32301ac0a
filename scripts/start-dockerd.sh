#!/bin/bash
# Start a Docker engine when none answers: systemd's docker.service where systemd runs,
# else dockerd in the background (logs in /var/log/fleetbake-dockerd.log).
set -euo pipefail

sudo=""
if [ "$(id -u)" -ne 0 ]; then
    sudo="sudo"
fi

if docker info >/dev/null 2>&1; then
    echo "dockerd answers: $(docker info --format '{{.ServerVersion}} ({{.Driver}})')"
    exit 0
fi
if [ -d /run/systemd/system ]; then
    $sudo systemctl start docker
else
    $sudo sh -c 'setsid nohup dockerd >>/var/log/fleetbake-dockerd.log 2>&1 < /dev/null &'
fi
for _ in $(seq 60); do
    if docker info >/dev/null 2>&1; then
        echo "dockerd started: $(docker info --format '{{.ServerVersion}} ({{.Driver}})')"
        exit 0
    fi
    sleep 1
done
echo "start-dockerd: dockerd did not answer within 60 s; see /var/log/fleetbake-dockerd.log" >&2
exit 1
