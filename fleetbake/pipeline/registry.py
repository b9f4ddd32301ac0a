"""The one place fleetbake talks to a registry over HTTP (OCI distribution API), standard library only.

docker-py pushes the image itself; this pushes what docker cannot: the OCI artifact holding the
image's record (SBOM, software report) with a `subject` pointing at the image, the referrers
fallback tag that lists it (registries without the referrers API, e.g. distribution 2.8), and the
row's multi-arch index. `resolve` follows an index to one platform's image manifest.

Plain http only for this machine (127.0.0.1, localhost, ::1), as docker allows an insecure registry
there by default; https everywhere else. Credentials: FLEETBAKE_REGISTRY_TOKEN (and, for registries
that want a user name with it, FLEETBAKE_REGISTRY_USER), answered to the registry's own challenge:
Basic directly, Bearer through its token service (how ghcr.io takes a GITHUB_TOKEN); with none, an
anonymous pull token where the service gives one (reading a public package).
"""

from __future__ import annotations

import base64
import email.message
import hashlib
import http.client
import json
import os
import re
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import dataclass

from fleetbake.errors import FleetbakeError

OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_INDEX = "application/vnd.oci.image.index.v1+json"
DOCKER_MANIFEST = "application/vnd.docker.distribution.manifest.v2+json"
DOCKER_LIST = "application/vnd.docker.distribution.manifest.list.v2+json"
MANIFEST_TYPES = (OCI_MANIFEST, OCI_INDEX, DOCKER_MANIFEST, DOCKER_LIST)
EMPTY_TYPE = "application/vnd.oci.empty.v1+json"
EMPTY = b"{}"  # the OCI empty descriptor's blob
TOKEN_ENV = "FLEETBAKE_REGISTRY_TOKEN"
USER_ENV = "FLEETBAKE_REGISTRY_USER"
LOCAL_HOSTS = {"127.0.0.1", "localhost", "::1", "[::1]"}
# HOST[:PORT]/NAMESPACE, where fleetbake publishes (the images go to NAMESPACE/worker).
REGISTRY_NAMESPACE = re.compile(r"[a-z0-9.-]+(:[0-9]{1,5})?(/[a-z0-9._-]+)+|[a-z0-9.-]+(:[0-9]{1,5})?")


class RegistryError(FleetbakeError):
    pass


class NoPlatform(RegistryError):
    """The reference names an index that lists no image for the platform asked for."""

    def __init__(self, message: str, index: Descriptor):
        super().__init__(message)
        self.index = index


def digest_of(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def canonical(document: dict) -> bytes:
    """The bytes a manifest is pushed as: one spelling, so the same document has the same digest before a push."""
    return json.dumps(document, separators=(",", ":"), sort_keys=True).encode()


def referrers_tag(digest: str) -> str:
    """The OCI referrers tag schema: <alg>-<ref>, ref truncated to 64 characters."""
    algorithm, _, encoded = digest.partition(":")
    return f"{algorithm}-{encoded[:64]}"


@dataclass(frozen=True)
class Descriptor:
    media_type: str
    digest: str
    size: int

    @classmethod
    def of(cls, media_type: str, data: bytes) -> Descriptor:
        return cls(media_type, digest_of(data), len(data))

    def to_json(self, **extra) -> dict:
        return {"mediaType": self.media_type, "digest": self.digest, "size": self.size,
                **{k: v for k, v in extra.items() if v}}


def base_url(host: str) -> str:
    name = host.rsplit(":", 1)[0] if not host.startswith("[") else host.split("]")[0] + "]"
    return f"{'http' if name in LOCAL_HOSTS else 'https'}://{host}"


class Registry:
    """One repository, e.g. Registry("ghcr.io", "python/worker")."""

    def __init__(self, host: str, repository: str, token: str | None = None, user: str | None = None,
                 timeout: float = 120):
        self.host, self.repository, self.timeout = host, repository, timeout
        self.url = f"{base_url(host)}/v2/{repository}"
        self.token = token if token is not None else os.environ.get(TOKEN_ENV) or None
        self.user = user if user is not None else os.environ.get(USER_ENV) or "fleetbake"
        self.authorization: str | None = None
        self.uploads = 0  # blobs this client uploaded (blobs already there are not sent again)

    # --- HTTP ---------------------------------------------------------------------------------------

    def request(self, method: str, url: str, data: bytes | None = None, headers: dict | None = None,
                ok: tuple[int, ...] = (200,)) -> tuple[int, email.message.Message, bytes]:
        """(status, headers, body); a status outside `ok` (404 may be in it) is a RegistryError."""
        url = urllib.parse.urljoin(self.url + "/", url)
        for attempt in (1, 2):
            req = urllib.request.Request(url, data=data, method=method, headers=headers or {})
            # The credential goes to the registry's own host only (an upload Location may name another).
            if self.authorization and urllib.parse.urlsplit(url).netloc == urllib.parse.urlsplit(self.url).netloc:
                # Unredirected: a blob download redirected to storage must not carry the registry's credential.
                req.add_unredirected_header("Authorization", self.authorization)
            try:
                with urllib.request.urlopen(req, timeout=self.timeout) as response:
                    # The headers as they came: their names are case-insensitive (a proxy may lower them).
                    status, head, body = response.status, response.headers, response.read()
            except urllib.error.HTTPError as exc:
                status, head, body = exc.code, exc.headers or email.message.Message(), exc.read()
            except (urllib.error.URLError, OSError, ValueError, http.client.HTTPException) as exc:  # a bad port too
                raise RegistryError(f"{method} {url}: {getattr(exc, 'reason', exc)}") from None
            if status == 401 and attempt == 1:
                self._authorize(head.get("WWW-Authenticate", ""))
                continue
            break
        if status not in ok:
            if status in (401, 403) and not self.token:  # an anonymous token was not enough
                raise self._wanted()
            raise RegistryError(f"{method} {url}: HTTP {status} {_reason(body)}")
        return status, head, body

    def _wanted(self) -> RegistryError:
        return RegistryError(f"{self.host}/{self.repository} wants credentials: set {TOKEN_ENV} (and {USER_ENV} if it "
                             "needs a user name): read access to read from it, write access to publish (for ghcr.io, "
                             "a GITHUB_TOKEN with packages: read or packages: write)")

    def _authorize(self, challenge: str) -> None:
        scheme, _, params = challenge.partition(" ")
        basic = "Basic " + base64.b64encode(f"{self.user}:{self.token}".encode()).decode() if self.token else None
        if scheme.lower() != "bearer":
            if not basic:
                raise self._wanted()
            self.authorization = basic
            return
        fields = dict(re.findall(r'(\w+)="([^"]*)"', params))
        if "realm" not in fields:
            raise RegistryError(f"{self.host}: a Bearer challenge without a realm: {challenge!r}")
        realm = urllib.parse.urlsplit(fields["realm"])
        if realm.scheme != "https" and realm.hostname not in LOCAL_HOSTS:
            raise RegistryError(f"{self.host}: its token service {fields['realm']} is not https: not used")
        # With no token, an anonymous pull token: how a public package is read (ghcr.io gives one).
        query = {"service": fields.get("service", self.host),
                 "scope": f"repository:{self.repository}:{'pull,push' if basic else 'pull'}"}
        req = urllib.request.Request(f"{fields['realm']}?{urllib.parse.urlencode(query)}")
        if basic:  # unredirected: a redirect must not carry the token to wherever it points
            req.add_unredirected_header("Authorization", basic)
        try:
            with urllib.request.urlopen(req, timeout=self.timeout) as response:
                answer = json.load(response)
        except urllib.error.HTTPError as exc:
            if not basic:
                raise self._wanted() from None
            raise RegistryError(f"{self.host}: the token service {fields['realm']} refused {TOKEN_ENV}: "
                                f"HTTP {exc.code} {_reason(exc.read())}") from None
        except (urllib.error.URLError, OSError, ValueError) as exc:
            raise RegistryError(f"{self.host}: the token service {fields['realm']}: {getattr(exc, 'reason', exc)}") from None
        bearer = (answer.get("token") or answer.get("access_token")) if isinstance(answer, dict) else None
        if not bearer or not isinstance(bearer, str):
            raise RegistryError(f"{self.host}: the token service {fields['realm']} gave no token")
        self.authorization = f"Bearer {bearer}"

    # --- blobs --------------------------------------------------------------------------------------

    def has_blob(self, digest: str) -> bool:
        status, _, _ = self.request("HEAD", f"blobs/{digest}", ok=(200, 404))
        return status == 200

    def push_blob(self, data: bytes, media_type: str) -> Descriptor:
        """Upload one blob (POST for a session, then a monolithic PUT ?digest=), unless it is there already."""
        descriptor = Descriptor.of(media_type, data)
        if self.has_blob(descriptor.digest):
            return descriptor
        _, head, _ = self.request("POST", "blobs/uploads/", data=b"", ok=(202,))
        location = head.get("Location")
        if not location:
            raise RegistryError(f"POST {self.url}/blobs/uploads/: no Location to upload to")
        location = urllib.parse.urljoin(self.url + "/", location)
        separator = "&" if "?" in location else "?"
        self.request("PUT", f"{location}{separator}digest={urllib.parse.quote(descriptor.digest)}", data=data,
                     headers={"Content-Type": "application/octet-stream"}, ok=(201,))
        self.uploads += 1
        return descriptor

    def get_blob(self, digest: str) -> bytes:
        _, _, body = self.request("GET", f"blobs/{digest}")
        if digest_of(body) != digest:
            raise RegistryError(f"blob {digest} from {self.url}: the content does not match its digest")
        return body

    # --- manifests ----------------------------------------------------------------------------------

    def head_manifest(self, reference: str) -> Descriptor | None:
        """The manifest as the registry holds it (media type, digest, size), or None when there is none."""
        status, head, _ = self.request("HEAD", f"manifests/{reference}", headers={"Accept": ", ".join(MANIFEST_TYPES)},
                                       ok=(200, 404))
        if status == 404:
            return None
        digest, size = head.get("Docker-Content-Digest"), head.get("Content-Length")
        if not digest or size is None:  # some registries answer HEAD sparsely: read it
            found = self.get_manifest(reference)
            return found[0] if found else None
        return Descriptor(head.get("Content-Type", "").split(";")[0], digest, int(size))

    def get_manifest(self, reference: str) -> tuple[Descriptor, dict] | None:
        status, head, body = self.request("GET", f"manifests/{reference}", headers={"Accept": ", ".join(MANIFEST_TYPES)},
                                          ok=(200, 404))
        if status == 404:
            return None
        if reference.startswith("sha256:") and digest_of(body) != reference:
            raise RegistryError(f"manifest {reference} from {self.url}: the content does not match its digest")
        try:
            manifest = json.loads(body)
        except ValueError:
            raise RegistryError(f"manifest {reference} from {self.url} is not JSON") from None
        media_type = head.get("Content-Type", "").split(";")[0] or manifest.get("mediaType", "")
        return Descriptor(media_type, digest_of(body), len(body)), manifest

    def put_manifest(self, manifest: dict, reference: str | None = None) -> Descriptor:
        """Store a manifest under a tag, or by its own digest when no reference is given."""
        body = canonical(manifest)
        descriptor = Descriptor.of(manifest["mediaType"], body)
        reference = reference or descriptor.digest
        _, head, _ = self.request("PUT", f"manifests/{reference}", data=body,
                                  headers={"Content-Type": descriptor.media_type}, ok=(201,))
        returned = head.get("Docker-Content-Digest")
        if returned and returned != descriptor.digest:
            raise RegistryError(f"PUT manifest {reference}: the registry stored {returned}, not {descriptor.digest}")
        return descriptor

    def resolve(self, reference: str, platform: str) -> tuple[Descriptor, dict, Descriptor | None] | None:
        """(descriptor, manifest, index) of the image manifest `reference` names for `platform` (e.g.
        "linux/arm64/v8"): the manifest itself (index None), or, when it is an index (publish pushes one per row),
        the manifest its entry for the platform names (index: the index's descriptor). None when the reference is
        not there; NoPlatform when the index lists no image for the platform."""
        found = self.get_manifest(reference)
        if found is None:
            return None
        ref = f"{self.host}/{self.repository}:{reference}"
        if not is_index(*found):  # one image: for this platform only if its config says so
            config = found[1].get("config") or {}
            try:
                said = json.loads(self.get_blob(config["digest"])) if isinstance(config.get("digest"), str) else {}
            except ValueError:
                said = {}
            entry = {"digest": found[0].digest, "platform": {k: said.get(k) for k in ("os", "architecture", "variant")}}
            if pick({"manifests": [entry]}, platform) is None:
                raise NoPlatform(f"{ref} is one image for {platform_string(entry['platform'])}, not {platform}",
                                 found[0])
            return found[0], found[1], None
        entry = pick(found[1], platform)
        if entry is None:
            listed = [platform_string(e["platform"]) for e in found[1].get("manifests") or []
                      if isinstance(e, dict) and isinstance(e.get("platform"), dict)]
            raise NoPlatform(f"{ref} is an index with no image for {platform} (it lists "
                             f"{', '.join(listed) or 'no platform'})", found[0])
        child = self.get_manifest(entry["digest"])
        if child is None:
            raise RegistryError(f"{ref}: its index lists {entry['digest']} for {platform}, which is not there")
        if is_index(*child):  # fleetbake pushes none; following one more level would hide a mistake
            raise RegistryError(f"{ref}: its entry for {platform} is another index, not an image's manifest")
        return child[0], child[1], found[0]

    # --- referrers ----------------------------------------------------------------------------------

    def add_referrer(self, subject: Descriptor, referrer: dict) -> Descriptor:
        """Create or update the subject's referrers fallback tag: an OCI index listing `referrer` (a descriptor)."""
        tag = referrers_tag(subject.digest)
        found = self.get_manifest(tag)
        index = found[1] if found and found[1].get("mediaType") == OCI_INDEX else {}
        listed = [m for m in index.get("manifests") or [] if m.get("digest") != referrer["digest"]]
        return self.put_manifest({"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": [*listed, referrer]}, tag)

    def referrers(self, subject_digest: str) -> list[dict]:
        """The descriptors the fallback tag lists for this subject ([] when there is none)."""
        found = self.get_manifest(referrers_tag(subject_digest))
        return list(found[1].get("manifests") or []) if found else []


def is_index(descriptor: Descriptor, manifest: dict) -> bool:
    """An OCI index or a Docker manifest list (by its media type, or, for a registry that says neither, by its
    shape: manifests and no config)."""
    return (descriptor.media_type in (OCI_INDEX, DOCKER_LIST) or manifest.get("mediaType") in (OCI_INDEX, DOCKER_LIST)
            or ("manifests" in manifest and "config" not in manifest))


def platform_string(platform: dict) -> str:
    """OCI's os/architecture[/variant] of an index entry's platform."""
    parts = [platform.get("os") or "?", platform.get("architecture") or "?", platform.get("variant") or ""]
    return "/".join(str(part) for part in parts if part)


def pick(index: dict, platform: str) -> dict | None:
    """The entry of `index` for `platform` ("linux/arm64/v8", Arch.platform): os and architecture equal, and the
    variant too where both name one (an entry without a variant stands for its architecture's default)."""
    wanted_os, _, rest = platform.partition("/")
    wanted_arch, _, wanted_variant = rest.partition("/")
    matches = [entry for entry in index.get("manifests") or [] if isinstance(entry, dict)
               and isinstance(entry.get("digest"), str) and isinstance(entry.get("platform"), dict)
               and entry["platform"].get("os") == wanted_os and entry["platform"].get("architecture") == wanted_arch
               and (not wanted_variant or entry["platform"].get("variant") in (None, "", wanted_variant))]
    # An exact variant first, then one that names none.
    matches.sort(key=lambda entry: entry["platform"].get("variant") != (wanted_variant or None))
    return matches[0] if matches else None


def _reason(body: bytes) -> str:
    """The registry's own error code and message (OCI error body), else the start of the body."""
    try:
        errors = json.loads(body).get("errors") or []
        return "; ".join(f"{e.get('code')}: {e.get('message')}" for e in errors) or body[:200].decode(errors="replace")
    except (ValueError, AttributeError):
        return body[:200].decode(errors="replace").strip()
