# The careful hand-written Dockerfile that fleetbake's image is measured against (invoke bench):
# what a good engineer would write for the same job, from the same inputs. `invoke bench`
# passes the row's data as build arguments (PACKAGES is the very list fleetbake renders into
# packages.txt) and the extra CA certificates fleetbake trusts, one a file, in extra-ca/.
# It passes hadolint at the threshold of fleetbake's own images (tests/test_lint.py).
FROM debian:12

ARG PACKAGES
ARG BUILDBOT_WORKER_VERSION
ARG WORKER_USER
ARG WORKER_UID
# Build time only: not left in the image's environment.
ARG DEBIAN_FRONTEND=noninteractive

# Security updates first (the same `upgrade` fleetbake runs), then the packages without
# recommends, and no package lists or .deb files left in the layer (this base, bootstrapped
# with mmdebstrap, has no docker-clean hook). Versions are the suite's plus today's updates:
# pinning each of the row's packages would undo the upgrade, hence DL3008 off here alone.
# PACKAGES is split into words on purpose.
# hadolint ignore=DL3008
RUN apt-get update \
 && apt-get -y upgrade \
 && apt-get install -y --no-install-recommends $PACKAGES \
 && apt-get clean \
 && rm -rf /var/lib/apt/lists/*

# Extra CA certificates (a TLS-intercepting proxy): trusted system-wide, for pip and ssl.
COPY extra-ca/ /usr/local/share/ca-certificates/extra/
RUN update-ca-certificates

# The non-root build user; its home is the buildarea.
RUN groupadd --gid "$WORKER_UID" "$WORKER_USER" \
 && useradd --uid "$WORKER_UID" --gid "$WORKER_UID" --home-dir /buildarea --create-home \
      --shell /bin/bash "$WORKER_USER"

# buildbot-worker, pinned, in its own virtualenv; pip trusts the system bundle (extra CA
# included) and keeps no cache.
RUN python3 -m venv /opt/buildbot-worker \
 && /opt/buildbot-worker/bin/pip install --no-cache-dir --disable-pip-version-check \
      --cert /etc/ssl/certs/ca-certificates.crt "buildbot-worker==$BUILDBOT_WORKER_VERSION" \
 && ln -s /opt/buildbot-worker/bin/buildbot-worker /usr/local/bin/buildbot-worker

ENV LANG=C.UTF-8
USER $WORKER_USER
WORKDIR /buildarea
