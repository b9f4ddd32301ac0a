"""Extra CA certificates given to `invoke build --ca-bundle` are trusted inside the image by apt,
pip (the worker's venv) and CPython's ssl: the README's answer to a TLS-intercepting proxy.

A throwaway CA (trustme) signs the certificate of an HTTPS server on 127.0.0.1. A small row is
built twice: with the proxy's CA only, and with the proxy's CA plus the throwaway one. In a
container on the host's network (only loopback is used) the three clients fetch from that
server: they succeed in the second image and fail with a certificate error in the first.
The row builds on the debian:12 base the README's setup bootstraps (bootstrapped here if it is missing), which
stays; everything else this module creates is removed at its end.
"""

import ast
import os
import re
import ssl
import subprocess
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
import trustme

from conftest import ROOT
from integration.test_build_cli import remove_images

ROW = "fbtest-ca-small"
BASE = "debian:12"  # the real row's base, shared: never removed here
MATRIX = f"""\
smoke: [test_sys]
configurations:
  pydebug:
    configure: [--with-pydebug]
rows:
  {ROW}:
    family: debian
    base: {BASE}
    # The live debian-12 row's bootstrap, so that a base bootstrapped here is the one the real row would make.
    bootstrap: {{suite: bookworm, mirror: http://deb.debian.org/debian, security_mirror: http://deb.debian.org/debian-security}}
    packages: [netbase]
    configurations: [pydebug]
"""
HELLO = "hello through the throwaway CA\n"
PAGES = {
    "/hello.txt": ("text/plain", HELLO),
    "/simple/": ("text/html", '<html><body><a href="fbtest-pkg/">fbtest-pkg</a></body></html>\n'),
    "/simple/fbtest-pkg/": ("text/html", '<html><body><a href="/files/fbtest_pkg-1.0.tar.gz">fbtest_pkg-1.0.tar.gz</a>'
                                         "</body></html>\n"),
}


class Handler(BaseHTTPRequestHandler):
    def do_GET(self):  # noqa: N802
        kind, body = PAGES.get(self.path, ("text/plain", None))
        payload = (body or "not found\n").encode()
        self.send_response(200 if body else 404)
        self.send_header("Content-Type", kind)
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)

    def log_message(self, *args):
        pass


@pytest.fixture(scope="module")
def throwaway_ca():
    return trustme.CA()


@pytest.fixture(scope="module")
def server(throwaway_ca):
    """An HTTPS server on 127.0.0.1 whose certificate only the throwaway CA vouches for."""
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    throwaway_ca.issue_cert("localhost", "127.0.0.1").configure_cert(context)
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    httpd.socket = context.wrap_socket(httpd.socket, server_side=True)  # a refused handshake drops that connection only
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"https://localhost:{httpd.server_address[1]}"
    httpd.shutdown()
    httpd.server_close()


@pytest.fixture(scope="module")
def images(client, throwaway_ca, tmp_path_factory):
    """{"without": ID, "with": ID}: the small row built without and with the throwaway CA."""
    root = tmp_path_factory.mktemp("ca-trust")
    matrix_path = root / "matrix.yml"
    matrix_path.write_text(MATRIX)
    proxy = os.environ.get("SSL_CERT_FILE")  # the machine's own proxy CA: apt and pip need it during the build
    plain = root / "proxy.pem"
    plain.write_bytes(open(proxy, "rb").read() if proxy else b"")
    extended = root / "proxy-and-throwaway.pem"
    extended.write_bytes(plain.read_bytes() + b"\n" + throwaway_ca.cert_pem.bytes())
    env = {**os.environ, "FLEETBAKE_BUILD_DIR": str(root / "build")}
    remove_images(client, [ROW])
    built = {}
    try:
        for name, bundle in (("without", str(plain) if proxy else ""), ("with", str(extended))):
            result = subprocess.run([sys.executable, "-m", "invoke", "build", "--os", ROW, "--matrix", str(matrix_path),
                                     "--ca-bundle", bundle], cwd=ROOT, env=env, capture_output=True, text=True,
                                    timeout=1800, check=False)
            print(result.stdout[-3000:], result.stderr)
            assert result.returncode == 0, result.stderr
            built[name] = client.images.get(f"fleetbake/worker:{ROW}").id
        assert built["with"] != built["without"]
        yield built
    finally:
        remove_images(client, [ROW])


PYTHON = ["python3", "-c", "import sys, urllib.request; print(urllib.request.urlopen(sys.argv[1], timeout=10).read().decode())"]
APT = ["sh", "-c", '/usr/lib/apt/apt-helper download-file "$1" /tmp/apt-hello.txt && cat /tmp/apt-hello.txt', "apt"]
# The distribution's pip, the one a venv made in a build step gets (the worker's own venv has none).
PIP = ["sh", "-c", 'exec python3 "$(ls /usr/share/python-wheels/pip-*.whl | tail -n 1)/pip" "$@"', "pip", "index",
       "versions", "fbtest-pkg", "--retries", "0", "--timeout", "10", "--no-cache-dir", "--disable-pip-version-check",
       "--index-url"]


def probes(client, image, url):
    """What python3 (as the build user), apt (as root) and the distribution's pip (as the build user) make of url."""
    # Not the shared `run` fixture: its label is swept by any other test session's teardown.
    container = client.containers.run(image, entrypoint=["sleep", "infinity"], network_mode="host", detach=True,
                                      labels={"io.fleetbake.test-ca-trust": "1"})
    results = {}
    try:
        for name, argv, user in (("python", [*PYTHON, f"{url}/hello.txt"], "buildbot"),
                                 ("apt", [*APT, f"{url}/hello.txt"], "root"),
                                 ("pip", [*PIP, f"{url}/simple/"], "buildbot")):
            code, out = container.exec_run(argv, user=user)
            results[name] = (code, out.decode(errors="replace"))
            print(f"--- {name} in {image[:19]}: exit {code}\n{results[name][1][-1500:]}")
    finally:
        container.remove(force=True, v=True)
    return results


def test_the_extra_ca_is_trusted_by_python_apt_and_pip(images, server, client):
    found = probes(client, images["with"], server)
    assert found["python"] == (0, HELLO + "\n")
    code, out = found["apt"]
    assert code == 0 and out.endswith(HELLO), out
    code, out = found["pip"]
    assert code == 0 and "fbtest-pkg (1.0)" in out, out


def test_without_the_extra_ca_the_same_probes_fail_on_the_certificate(images, server, client):
    found = probes(client, images["without"], server)
    code, out = found["python"]
    assert code != 0 and "CERTIFICATE_VERIFY_FAILED" in out, out
    code, out = found["apt"]
    assert code != 0 and "Certificate verification failed" in out, out
    code, out = found["pip"]
    assert code != 0 and "CERTIFICATE_VERIFY_FAILED" in out, out


BODIES = (
    "import glob, re, sys\n"
    "for pattern in sys.argv[1:]:\n"
    "    print(sorted(''.join(m.split()) for path in glob.glob(pattern)\n"
    "                 for m in re.findall(r'-----BEGIN CERTIFICATE-----(.*?)-----END CERTIFICATE-----', open(path).read(), re.S)))\n"
)


def bodies(pem: str) -> set[str]:
    return {"".join(m.split()) for m in re.findall(r"-----BEGIN CERTIFICATE-----(.*?)-----END CERTIFICATE-----", pem, re.S)}


def test_only_the_certificates_the_distribution_lacks_are_added(images, client, throwaway_ca):
    """A bundle passed whole (the proxy's CA among the public ones) adds only what Debian's ca-certificates lacks:
    the same trust, fewer certificates for update-ca-certificates to process (slow under emulation)."""
    out = client.containers.run(images["with"], ["python3", "-c", BODIES, "/usr/local/share/ca-certificates/fleetbake/*.crt",
                                                 "/usr/share/ca-certificates/mozilla/*.crt"], entrypoint=[], remove=True)
    added, distribution = (set(ast.literal_eval(line)) for line in out.decode().splitlines())
    proxy = os.environ.get("SSL_CERT_FILE")
    given = bodies((open(proxy).read() if proxy else "") + "\n" + throwaway_ca.cert_pem.bytes().decode())
    assert distribution and bodies(throwaway_ca.cert_pem.bytes().decode()) <= added
    assert added == given - distribution


TRUST_STORE = (
    "cd /etc/ssl/certs && find . -printf '%p -> %l\\n' | sort && sha256sum ca-certificates.crt && "
    "echo ==== && update-ca-certificates --fresh >/dev/null 2>&1 && "
    "find . -printf '%p -> %l\\n' | sort && sha256sum ca-certificates.crt"
)

UNDIVERTED = (
    "cd / && grep ' usr/sbin/update-ca-certificates$' /var/lib/dpkg/info/ca-certificates.md5sums | md5sum -c && "
    "(dpkg-divert --list /usr/sbin/update-ca-certificates | grep . || echo no diversion)"
)


def test_the_trust_store_is_what_update_ca_certificates_makes(images, client):
    """install-packages.sh skips the second of ca-certificates' two update-ca-certificates passes (no hook, nothing
    changed since the first), and install-ca.sh adds the new certificates itself (update-ca-certificates would go
    through the distribution's ~140 again, a minute under emulation): the image's /etc/ssl/certs, every link and the
    bundle's bytes, must be what update-ca-certificates --fresh makes of the same certificates, with Debian's
    command back in place."""
    out = client.containers.run(images["with"], ["sh", "-c", TRUST_STORE], entrypoint=[], user="root",
                                remove=True).decode()
    built, fresh = out.split("====\n")
    assert "fleetbake-extra-" in built and built.count(" -> /usr/local/share/ca-certificates/fleetbake/") >= 1
    assert built == fresh
    # install-packages.sh diverts update-ca-certificates while apt runs: Debian's is back, and undiverted.
    out = client.containers.run(images["with"], ["sh", "-c", UNDIVERTED], entrypoint=[], user="root",
                                remove=True).decode()
    assert out == "usr/sbin/update-ca-certificates: OK\nno diversion\n"
