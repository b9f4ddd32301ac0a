#!/bin/bash
# The unit suite as a fresh Debian 12 machine's user runs it: /usr/bin/python3 (3.11.2), not root (run this as root;
# it switches to a throwaway system user, fleetbake-ci), in a scratch copy of this checkout. Arguments go to pytest.
set -euo pipefail
cd "$(dirname "$0")/.."

user=fleetbake-ci
python=/usr/bin/python3
if [ "$(id -u)" != 0 ]; then
    echo "unit-as-user: run it as root: it creates the user $user and runs the tests as that user" >&2
    exit 2
fi
if [ ! -x "$python" ]; then
    echo "unit-as-user: $python is missing: this is Debian 12's own python3 (apt-get install python3 python3-venv)" >&2
    exit 2
fi
id -u "$user" >/dev/null 2>&1 || useradd --system --user-group --no-create-home --shell /usr/sbin/nologin "$user"

scratch=$(mktemp -d /tmp/fleetbake-unit.XXXXXX)
trap 'rm -rf "$scratch"' EXIT
chown "$user:" "$scratch"

# The tools the tests call that may live where the user cannot look (a runner's tool cache under /home): Packer
# (the suite needs Debian's 1.6.6, the one on root's PATH) and node, copied or linked into a folder of the user's.
tools="$scratch/tools"
install -d -o "$user" "$tools"
for tool in packer node; do
    found=$(command -v "$tool" || true)
    [ -z "$found" ] || install -m 0755 "$(readlink -f "$found")" "$tools/$tool"
done

# As the user: the machine's proxy and CA settings stay; root's HOME, PATH, pyenv and CI's timing file do not.
as_user() {
    runuser -u "$user" -- env -u PYENV_ROOT -u VIRTUAL_ENV -u PYTHONPATH -u PYTHONHOME -u FLEETBAKE_TIMINGS \
        HOME="$scratch/home" USER="$user" LOGNAME="$user" PATH="$scratch/venv/bin:$tools:/usr/local/bin:/usr/bin:/bin" "$@"
}

# The working tree as it is (uncommitted changes too), without what setup and runs made: a fresh clone's files,
# plus tools/node_modules (npm ci's output, which the workflow lint needs).
as_user mkdir "$scratch/home" "$scratch/src"
tar -C . --exclude=./.venv --exclude=./build --exclude=__pycache__ --exclude='*.egg-info' --exclude=.pytest_cache \
    -cf - . | as_user tar -C "$scratch/src" -xf -

as_user "$python" -m venv "$scratch/venv"
as_user "$scratch/venv/bin/python" -m pip install --quiet --disable-pip-version-check -e "$scratch/src[test]"
echo "unit-as-user: $(as_user "$scratch/venv/bin/python" -c 'import os, platform, pwd, sys
print(f"Python {platform.python_version()} ({sys.base_prefix}) as {pwd.getpwuid(os.geteuid()).pw_name}, uid {os.geteuid()}")')"
cd "$scratch/src"
as_user "$scratch/venv/bin/python" -m pytest -q -p no:cacheprovider "$@"
