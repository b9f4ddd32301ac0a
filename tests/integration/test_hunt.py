"""Positive controls for the secret hunt, in the image, as the build user: with the worker's password put where a
build step can read it, the hunt says FOUND and names each place. Without them a broken hunt passes every
"the password is nowhere" test (test_image.py, test_fleet_join.py)."""

from pathlib import Path

from hunt_places import HOLD, expected, parse
from integration.conftest import build_user, unique_password, wait_for_log
from integration.test_image import HARDENED  # the README's run line, as for the negative hunts

HUNT_PATH = "/opt/fleetbake/fleetbake/worker/hunt.py"  # what the README has owners run


def sh(container, command, user):
    code, out = container.exec_run(command, user=user)
    return code, out.decode(errors="replace")


def test_the_hunt_names_every_place_the_build_user_can_read_the_password_from(client, image, run):
    password = unique_password()
    container = run(image.image_id, environment={"WORKERNAME": "hunt-control", "WORKERPASS": password,
                                                 "BUILDMASTER": "127.0.0.1:9", "MAXRETRIES": "none"}, **HARDENED)
    wait_for_log(container, "Scheduling retry")  # the worker runs, as it does under a build step
    user, _ = build_user(client, image)
    code, shipped = sh(container, ["cat", HUNT_PATH], user)
    # The checkout's hunt (the one test_image.py runs), under the render's "generated" line.
    assert code == 0 and shipped.endswith((Path(__file__).parents[2] / "fleetbake" / "worker" / "hunt.py").read_text())

    # Files: the build user's own, one of root's it may read, and one of root's it may not (never FOUND).
    plant = 'printf "before %s after\\n" "$1" > "$2" && chmod "$3" "$2"'
    for path, mode, owner in (("/buildarea/control-leak.txt", "600", user), ("/tmp/root-readable", "644", "root"),
                              ("/tmp/root-only", "600", "root")):
        assert sh(container, ["sh", "-c", plant, "sh", password, path, mode], owner)[0] == 0

    # Processes of the build user: the password in an environ, a cmdline, memory; and in the hunt's environment.
    code, out = sh(container, ["env", "-i", "/usr/bin/python3", "-I", "-c", HOLD, password[::-1], "",
                               "/usr/bin/python3", "-I", HUNT_PATH, password[::-1]], user)
    holders, verdict, places = parse(out)
    assert (code, verdict) == (1, "FOUND"), out
    assert places == expected("/proc", holders) | {"/buildarea/control-leak.txt", "/tmp/root-readable"}, out
