"""registry.py's credentials against a real registry that wants them the way ghcr.io does: Debian's
docker-registry with token auth on loopback, and a token service of our own beside it that signs RS256
tokens with a key the registry trusts. (No engine is needed; it runs with the other registry tests.)"""

import base64
import datetime as dt
import json
import shutil
import subprocess
import time
import urllib.error
import urllib.parse
import urllib.request
import uuid
from http.server import BaseHTTPRequestHandler

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa
from cryptography.x509.oid import NameOID

from conftest import free_port, serve_on_loopback
from fleetbake.pipeline import registry as oci

SERVICE, ISSUER = "fbtest-registry", "fbtest-issuer"
USER, SECRET = "fbtest-user", "fbtest-secret"
REPOSITORY = "fbtest/worker"


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


class TokenService:
    """Grants what a scope asks to USER:SECRET; pull alone to anyone without credentials, except on a repository
    named .../private (a private package); nothing to a wrong secret (HTTP 401). /moved redirects to /token on
    another host name. Keeps every token request it had."""

    def __init__(self, folder):
        self.key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "fbtest token service")])
        now = dt.datetime.now(dt.timezone.utc)
        self.cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(self.key.public_key())
                     .serial_number(x509.random_serial_number()).not_valid_before(now - dt.timedelta(minutes=5))
                     .not_valid_after(now + dt.timedelta(days=1)).sign(self.key, hashes.SHA256()))
        self.bundle = folder / "token-ca.pem"
        self.bundle.write_bytes(self.cert.public_bytes(serialization.Encoding.PEM))
        self.requests: list[tuple[str | None, str]] = []  # (user, scope)

    def token(self, user: str | None, scope: str) -> str:
        kind, name, actions = scope.split(":")
        granted = actions.split(",") if user else ["pull"]
        header = {"typ": "JWT", "alg": "RS256", "x5c": [base64.b64encode(self.cert.public_bytes(serialization.Encoding.DER)).decode()]}
        now = int(time.time())
        claims = {"iss": ISSUER, "sub": user or "", "aud": SERVICE, "iat": now, "nbf": now - 10, "exp": now + 300,
                  "jti": uuid.uuid4().hex, "access": [{"type": kind, "name": name, "actions": granted}]}
        signed = f"{b64url(json.dumps(header).encode())}.{b64url(json.dumps(claims).encode())}"
        signature = self.key.sign(signed.encode(), padding.PKCS1v15(), hashes.SHA256())
        return f"{signed}.{b64url(signature)}"

    def serve(self):
        service = self

        class Handler(BaseHTTPRequestHandler):
            def refuse(self, message: bytes):
                self.send_response(401)
                self.end_headers()
                self.wfile.write(b'{"errors":[{"code":"DENIED","message":"%s"}]}' % message)

            def do_GET(self):
                where = urllib.parse.urlsplit(self.path)
                if where.path == "/moved":
                    self.send_response(302)
                    self.send_header("Location", f"http://localhost:{self.server.server_port}/token?{where.query}")
                    self.end_headers()
                    return
                query = dict(urllib.parse.parse_qsl(where.query))
                user = None
                auth = self.headers.get("Authorization", "")
                if auth.startswith("Basic "):
                    user, _, secret = base64.b64decode(auth[6:]).decode().partition(":")
                    if (user, secret) != (USER, SECRET):
                        return self.refuse(b"bad credentials")
                elif query.get("scope", "").split(":")[1].endswith("/private"):
                    return self.refuse(b"a private package")
                service.requests.append((user, query.get("scope", "")))
                body = json.dumps({"token": service.token(user, query["scope"]), "expires_in": 300}).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args):
                pass

        return serve_on_loopback(Handler)


@pytest.fixture(scope="module")
def token_registry(tmp_path_factory):
    """(registry host:port, token service, its realm) of a docker-registry that takes Bearer tokens from it only."""
    binary = shutil.which("docker-registry")
    assert binary, "docker-registry is not installed (scripts/setup.sh installs it)"
    root = tmp_path_factory.mktemp("token-registry")
    service = TokenService(root)
    server = service.serve()
    port, realm = free_port(), f"http://127.0.0.1:{server.server_port}/token"
    (root / "config.yml").write_text(json.dumps({  # YAML takes JSON
        "version": "0.1", "log": {"level": "warn"}, "storage": {"filesystem": {"rootdirectory": str(root / "data")}},
        "http": {"addr": f"127.0.0.1:{port}"},
        "auth": {"token": {"realm": realm, "service": SERVICE,
                           "issuer": ISSUER, "rootcertbundle": str(service.bundle)}}}))
    process = subprocess.Popen([binary, "serve", str(root / "config.yml")], stdout=subprocess.DEVNULL,
                               stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 30
    while True:  # it is up when it asks for a token
        try:
            urllib.request.urlopen(f"http://127.0.0.1:{port}/v2/", timeout=2)
            raise AssertionError("the registry let an anonymous request in: token auth is not on")
        except urllib.error.HTTPError as exc:
            assert exc.code == 401 and exc.headers["WWW-Authenticate"].startswith("Bearer realm=")
            break
        except OSError:
            assert time.monotonic() < deadline, "docker-registry did not start"
            time.sleep(0.3)
    yield f"127.0.0.1:{port}", service, realm
    process.terminate()
    process.wait(timeout=30)
    server.shutdown()


def test_the_token_buys_a_bearer_token_that_pushes_and_anyone_reads_with_an_anonymous_one(token_registry):
    host, service, _ = token_registry
    writer = oci.Registry(host, REPOSITORY, token=SECRET, user=USER)
    blob, config = writer.push_blob(b'{"fbtest": 1}', "application/json"), writer.push_blob(oci.EMPTY, oci.EMPTY_TYPE)
    pushed = writer.put_manifest({"schemaVersion": 2, "mediaType": oci.OCI_MANIFEST, "artifactType": "application/x-fbtest",
                                  "config": config.to_json(),
                                  "layers": [blob.to_json()]}, "fbtest")
    assert writer.authorization.startswith("Bearer ")
    assert service.requests[0] == (USER, f"repository:{REPOSITORY}:pull,push")

    reader = oci.Registry(host, REPOSITORY, token="")
    descriptor, manifest = reader.get_manifest("fbtest")
    assert descriptor == pushed and manifest["layers"] == [blob.to_json()]
    assert reader.get_blob(blob.digest) == b'{"fbtest": 1}'
    assert service.requests[-1] == (None, f"repository:{REPOSITORY}:pull")  # anonymous, and asks for pull alone

    # Pull is all an anonymous token holds: a push is refused in one line naming the setting, and nothing is stored.
    with pytest.raises(oci.RegistryError) as info:
        oci.Registry(host, REPOSITORY, token="").push_blob(b"not stored", "application/octet-stream")
    assert str(info.value) == WANTED.format(host=host, repository=REPOSITORY)
    assert not writer.has_blob(oci.digest_of(b"not stored"))


WANTED = ("{host}/{repository} wants credentials: set FLEETBAKE_REGISTRY_TOKEN (and FLEETBAKE_REGISTRY_USER if it "
          "needs a user name): read access to read from it, write access to publish (for ghcr.io, a GITHUB_TOKEN "
          "with packages: read or packages: write)")


def test_a_private_package_without_a_token_names_the_setting_and_with_one_is_read(token_registry):
    host, _, _ = token_registry
    with pytest.raises(oci.RegistryError) as info:
        oci.Registry(host, "fbtest/private", token="").get_manifest("debian-12")
    assert str(info.value) == WANTED.format(host=host, repository="fbtest/private")
    assert oci.Registry(host, "fbtest/private", token=SECRET, user=USER).get_manifest("debian-12") is None  # no such tag


def test_the_token_is_not_carried_through_a_redirect_of_the_token_service(token_registry):
    """urllib copies a Request's headers onto a redirect; the token must go to the realm it was asked for only."""
    host, service, realm = token_registry
    client = oci.Registry(host, REPOSITORY, token=SECRET, user=USER)
    client._authorize(f'Bearer realm="{realm.replace("/token", "/moved")}",service="{SERVICE}"')
    assert service.requests[-1] == (None, f"repository:{REPOSITORY}:pull,push")  # it arrived without the credential


def test_a_wrong_token_is_refused_by_the_token_service_in_one_line(token_registry):
    host, _, realm = token_registry
    client = oci.Registry(host, REPOSITORY, token="wrong", user=USER)
    with pytest.raises(oci.RegistryError) as info:
        client.get_manifest("fbtest")
    assert str(info.value) == f"{host}: the token service {realm} refused FLEETBAKE_REGISTRY_TOKEN: HTTP 401 DENIED: bad credentials"
