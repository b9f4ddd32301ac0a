"""The AMI's provisioning and boot-time units, rehearsed in a container that boots systemd.

`invoke packer --target ami-rehearsal` runs the AMI template's provisioners, verbatim,
on a local base. Here that image boots with a fake IMDSv2 and moto's SSM on loopback (no
EC2 to reach), joins a real master, survives a kill, and powers itself off once its
master is gone for good: the latent-worker guard against zombie costs.
"""

import http.server
import subprocess
import threading
import time

import boto3
import pytest

from conftest import AWS_ENV, MotoServer, free_port
from fleetbake.devtools import master as master_mod
from fleetbake.operate.buildbot_api import BuildbotApi
from fleetbake.pipeline import identity, packer
from integration.conftest import running_master, unique_password, wait_connected

WORKER = "ami-latent"
PORTS = dict(pb_port=19991, www_port=18012, git_port=19420)
# systemd as PID 1 in a container (cgroup v1 host): its own /run, the cgroup tree, mount namespaces
# for the units' ProtectSystem/PrivateTmp. Host network: every server here is on 127.0.0.1.
SYSTEMD_RUN = dict(cap_add=["SYS_ADMIN"], security_opt=["seccomp=unconfined", "apparmor=unconfined"],
                   tmpfs={"/run": "", "/run/lock": ""}, cgroupns="host", network_mode="host")


class FakeImds(http.server.ThreadingHTTPServer):
    """IMDSv2 as EC2 serves it: a PUT for a token, then GETs that carry it. On 127.0.0.2,
    loopback still, so that the worker unit can be denied it as it is 169.254.169.254."""

    address = "127.0.0.2"

    def __init__(self, user_data: str):
        self.user_data, self.token = user_data, unique_password()
        super().__init__((self.address, free_port()), ImdsHandler)
        threading.Thread(target=self.serve_forever, daemon=True).start()

    @property
    def url(self) -> str:
        return f"http://{self.address}:{self.server_port}/latest"


class ImdsHandler(http.server.BaseHTTPRequestHandler):
    def do_PUT(self):
        ok = self.path == "/latest/api/token" and self.headers.get("X-aws-ec2-metadata-token-ttl-seconds")
        self.reply(200 if ok else 400, self.server.token if ok else "")

    def do_GET(self):
        if self.headers.get("X-aws-ec2-metadata-token") != self.server.token:
            return self.reply(401, "")
        answers = {"/latest/user-data": self.server.user_data, "/latest/meta-data/placement/region": "us-east-1"}
        self.reply(200, answers[self.path]) if self.path in answers else self.reply(404, "")

    def reply(self, status: int, body: str):
        self.send_response(status)
        self.end_headers()
        self.wfile.write(body.encode())

    def log_message(self, *args):
        pass


@pytest.fixture(scope="module")
def rehearsal(live_project, image, client):
    """The image, built by Packer from the AMI's own provisioners."""
    row = live_project.rows["debian-12"]
    packer.run(live_project, row, "ami-rehearsal", run_build=True, render_first=False, log=print)  # the committed template
    return client.images.get(identity.rehearsal_image_tag(row))


@pytest.fixture(scope="module")
def master(tmp_path_factory, live_project):
    with running_master(tmp_path_factory, live_project, {WORKER: unique_password()}, **PORTS) as info:
        yield info


def proc_status(container, pid):
    return dict(line.split(":\t", 1) for line in sh(container, f"cat /proc/{pid}/status").splitlines() if ":\t" in line)


def sh(container, command: str) -> str:
    code, output = container.exec_run(["sh", "-c", command])
    assert code == 0, f"{command}: {output.decode(errors='replace')}"
    return output.decode().strip()


def test_the_ami_boots_joins_restarts_and_powers_off_without_its_master(rehearsal, master, run, tmp_path):
    moto = MotoServer()
    try:
        ssm = boto3.client("ssm", region_name="us-east-1", endpoint_url=moto.endpoint,
                           aws_access_key_id="testing", aws_secret_access_key="testing")
        ssm.put_parameter(Name=f"/fleet/{WORKER}", Value=master.workers[WORKER], Type="SecureString")
        imds = FakeImds(f"WORKERNAME={WORKER}\nWORKERPASS_SSM=/fleet/{WORKER}\nBUILDMASTER=127.0.0.1:{master.pb_port}\n"
                        "WORKER_ADMIN=Jane Owner <jane@example.org>\nMAXRETRIES=2\n")
        # Only the endpoints differ from EC2: drop-ins, as an owner's own test rig would add.
        endpoints = tmp_path / "endpoints.conf"
        endpoints.write_text("[Service]\n" + "".join(f"Environment={k}={v}\n" for k, v in {
            "FLEETBAKE_IMDS": imds.url, "FLEETBAKE_SSM_ENDPOINT": moto.endpoint, **AWS_ENV}.items()))
        deny = tmp_path / "deny-imds.conf"
        deny.write_text(f"[Service]\nIPAddressDeny={imds.address}\n")
        journal = tmp_path / "journal"
        journal.mkdir()
        container = run(rehearsal.id, volumes={
            "/sys/fs/cgroup": {"bind": "/sys/fs/cgroup", "mode": "rw"},
            str(endpoints): {"bind": "/etc/systemd/system/fleetbake-worker-config.service.d/endpoints.conf", "mode": "ro"},
            str(deny): {"bind": "/etc/systemd/system/fleetbake-worker.service.d/deny-imds.conf", "mode": "ro"},
            str(journal): {"bind": "/var/log/journal", "mode": "rw"}}, **SYSTEMD_RUN)
        api = BuildbotApi(master.url)
        print(f"connected {wait_connected(api, WORKER, timeout=180):.1f}s after boot")

        # The units as shipped pass systemd's own checks, with their ExecStart paths present.
        assert sh(container, "systemd-analyze verify fleetbake-worker.service fleetbake-worker-config.service 2>&1") == ""
        props = sh(container, "systemctl show fleetbake-worker -p Restart -p NoNewPrivileges -p PrivateTmp -p ProtectSystem")
        assert sorted(props.split()) == ["NoNewPrivileges=yes", "PrivateTmp=yes", "ProtectSystem=strict", "Restart=always"]
        # The image's ENV, from the drop-in families.ami_service writes: the same user, locale and names as a container.
        environment = sh(container, "systemctl show -p Environment --value fleetbake-worker").split()
        assert {"LANG=C.UTF-8", "FLEETBAKE_ROW=debian-12", "FLEETBAKE_USER=buildbot"} <= set(environment), environment

        # The unit's main process is the root supervisor; the worker under it runs as buildbot,
        # without privileges; the password is root's alone.
        main = sh(container, "systemctl show -p MainPID --value fleetbake-worker")
        supervisor = proc_status(container, main)
        assert supervisor["Uid"].split()[0] == "0" and supervisor["NoNewPrivs"] == "1"
        assert int(supervisor["CapBnd"], 16) == (1 << 5) | (1 << 6) | (1 << 7) | (1 << 8)  # KILL SETGID SETUID SETPCAP
        [pid] = sh(container, f"cat /proc/{main}/task/{main}/children").split()
        status = proc_status(container, pid)
        assert status["Name"] == "twistd" and status["Uid"].split()[0] == sh(container, "id -u buildbot")
        assert status["NoNewPrivs"] == "1" and int(status["CapEff"], 16) == 0
        assert sh(container, "stat -c '%a %U' /etc/buildbot-worker/workerpass") == "400 root"
        assert master.workers[WORKER] not in sh(container, "cat /etc/buildbot-worker/env")
        # Build steps run in the worker's cgroup, whose firewall denies IMDS (user data, role
        # credentials); the boot-time config unit, and root, still reach it.
        assert "169.254.169.254" in sh(container, "systemctl show -p IPAddressDeny --value fleetbake-worker")
        cgroup = sh(container, f"sed -n 's/^0:://p' /proc/{pid}/cgroup")
        probe = f"python3 -c 'import socket; socket.create_connection((\"{imds.address}\", {imds.server_port}), timeout=3)'"
        assert container.exec_run(["sh", "-c", probe]).exit_code == 0
        as_build_step = container.exec_run(["sh", "-c", f"echo $$ > /sys/fs/cgroup/unified{cgroup}/cgroup.procs && {probe}"])
        assert as_build_step.exit_code != 0 and b"timed out" in as_build_step.output, as_build_step.output
        info = api.worker(WORKER)["workerinfo"]
        assert info["admin"].strip() == "Jane Owner <jane@example.org>" and "Debian GNU/Linux 12" in info["host"]

        # Killed: Restart=always brings it back, and a kill is no reason to power off.
        sh(container, "systemctl kill -s KILL fleetbake-worker")
        wait_connected(api, WORKER, connected=False, timeout=60)
        wait_connected(api, WORKER, timeout=120)
        assert sh(container, "systemctl show -p NRestarts --value fleetbake-worker") == "1"

        # Stopped by the admin: no power-off, and it starts again.
        sh(container, "systemctl stop fleetbake-worker")
        wait_connected(api, WORKER, connected=False, timeout=60)
        time.sleep(5)  # ExecStopPost has run
        container.reload()
        assert container.status == "running", "a systemctl stop powered the instance off"
        assert container.exec_run(["systemctl", "is-active", "fleetbake-worker"]).output.strip() == b"inactive"
        sh(container, "systemctl start fleetbake-worker")
        wait_connected(api, WORKER, timeout=120)

        # The master gone for good: MAXRETRIES, then ExecStopPost powers the instance off.
        started = time.monotonic()
        master_mod.stop_master_only(directory=master.directory)
        container.wait(timeout=180)
        print(f"powered off {time.monotonic() - started:.1f}s after the master stopped")
        log = subprocess.run(["journalctl", "--directory", str(journal), "--no-pager", "-o", "cat"],
                             capture_output=True, text=True, check=True).stdout
        assert log.count("the worker gave up on its master; powering off") == 1  # not at the kill, not at the stop
        assert master.workers[WORKER] not in log
    finally:
        moto.stop()
