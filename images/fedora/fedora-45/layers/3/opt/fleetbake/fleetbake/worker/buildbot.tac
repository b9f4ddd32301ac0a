# Generated from matrix.yml (row fedora-45) by fleetbake: do not edit. Change the matrix, images/ or fleetbake/worker/, then run `invoke render`.
# buildbot.tac for fleetbake worker images: run by twistd as the build user.
# Settings and password come from a pipe that the root entrypoint filled (parsed
# once, there), never from a file or a variable; the connection state goes back
# to the root supervisor through another pipe, for the HEALTHCHECK.
import ctypes
import importlib.metadata
import os

from buildbot_worker.bot import Worker
from twisted.application import service
from twisted.internet import reactor, task
from twisted.python import log

from fleetbake.worker import entrypoint  # the image's worker venv has /opt/fleetbake on its path (install-worker.sh)

PR_SET_DUMPABLE = 4
# Non-dumpable first: /proc/<pid>/{mem,environ,fd} become root-only, so a build
# step running as this same uid cannot read the password out of this process
# nor write into its status pipe.
if ctypes.CDLL(None, use_errno=True).prctl(PR_SET_DUMPABLE, 0, 0, 0, 0) != 0:
    raise SystemExit("fleetbake-worker: error: prctl(PR_SET_DUMPABLE) failed")

fd = int(os.environ.pop(entrypoint.PASSWORD_FD_VAR))
with os.fdopen(fd, "rb") as pipe:
    cfg, passwd = entrypoint.read_payload(pipe.read())
status_fd = int(os.environ.pop(entrypoint.STATUS_FD_VAR))
os.set_inheritable(status_fd, False)  # build steps must not inherit it
status_pipe = os.fdopen(status_fd, "w", buffering=1, encoding="utf-8")


state = ["starting"]


def report(new_state=None):
    """Tell the supervisor; also called every HEARTBEAT seconds, so that a frozen worker goes stale."""
    if new_state:
        state[0] = new_state
    try:
        status_pipe.write(state[0] + "\n")
    except OSError:  # the supervisor is gone: nothing left to tell
        pass


task.LoopingCall(report).start(entrypoint.HEARTBEAT, now=False)


basedir = cfg.basedir
worker_version = importlib.metadata.version("buildbot-worker")  # `hostinfo` reads the same metadata

info_dir = os.path.join(basedir, "info")
os.makedirs(info_dir, exist_ok=True)
admin = cfg.admin or "(not set: run the container with -e WORKER_ADMIN='Your Name <you@example.org>')"
host = cfg.host_info or entrypoint.host_info(os.environ.get("FLEETBAKE_IMAGE", ""), worker_version)
for name, text in (("admin", admin), ("host", host)):
    with open(os.path.join(info_dir, name), "w", encoding="utf-8") as handle:
        handle.write(entrypoint.with_newline(text))

log.msg(
    f"fleetbake: worker {cfg.name} -> {cfg.master_host}:{cfg.master_port}, keepalive {cfg.keepalive}s, "
    f"maxretries {cfg.maxretries}, buildbot-worker {worker_version}"
)
if not cfg.admin:
    log.msg("fleetbake: warning: WORKER_ADMIN is not set; the fleet admins cannot reach you")

application = service.Application("buildbot-worker")
worker = Worker(
    cfg.master_host,
    cfg.master_port,
    cfg.name,
    passwd,
    basedir,
    cfg.keepalive,
    umask=cfg.umask,
    allow_shutdown="file",
    maxRetries=cfg.maxretries,
    delete_leftover_dirs=True,
)
worker.setServiceParent(application)
del passwd

# The HEALTHCHECK reads what this reports: connected means logged in to the master, not just running.
_got_perspective = worker.bf.gotPerspective


def _on_login(perspective):
    _got_perspective(perspective)
    report(f"connected {cfg.master_host}:{cfg.master_port}")
    perspective.broker.notifyOnDisconnect(lambda: report(f"disconnected from {cfg.master_host}:{cfg.master_port}"))


worker.bf.gotPerspective = _on_login
reactor.addSystemEventTrigger("before", "shutdown", lambda: report("stopping"))
