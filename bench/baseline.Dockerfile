# The hand-written equivalent that fleetbake's image is measured against (invoke bench):
# what a worker owner following the devguide would write, with the same packages.
FROM debian:12
ARG PACKAGES
COPY extra-ca.crt /usr/local/share/ca-certificates/extra-ca.crt
RUN apt-get update && DEBIAN_FRONTEND=noninteractive apt-get install -y $PACKAGES \
 && update-ca-certificates
RUN useradd --create-home --uid 1000 buildbot
RUN python3 -m venv /opt/buildbot-worker \
 && PIP_CERT=/etc/ssl/certs/ca-certificates.crt /opt/buildbot-worker/bin/pip install buildbot-worker==4.3.0
USER buildbot
WORKDIR /home/buildbot
