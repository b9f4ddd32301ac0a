# Generated from matrix.yml (row fedora-44) by fleetbake: do not edit. Change the matrix, images/ or fleetbake/worker/, then run `invoke render`.
variable "base" {
  type        = string
  description = "base image (locally bootstrapped: pull = false)"
  default     = "registry.fedoraproject.org/fedora:44"
}


variable "context" {
  type        = string
  description = "the build context, relative to this folder (invoke packer passes build/contexts/<row>/, which adds the host's extra CA certificates)"
  default     = "../../../images/fedora/fedora-44"
}


variable "images" {
  type        = string
  description = "this checkout's images/, relative to this folder"
  default     = "../../../images"
}


variable "source_date_epoch" {
  type        = string
  description = "the inputs' commit time, as the Dockerfile's ARG (invoke packer passes it): every time the provisioning leaves in the image"
  default     = "0"
}


variable "labels" {
  type        = string
  description = "more LABEL arguments (invoke packer passes every label `invoke build` gives the image)"
  default     = "io.fleetbake.row=fedora-44"
}


source "docker" "worker" {
  image         = var.base
  commit        = true
  pull          = false
  container_dir = "/mnt"
  changes = [
    "ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin LANG=C.UTF-8 FLEETBAKE_ROW=fedora-44 FLEETBAKE_IMAGE=fleetbake/worker:fedora-44 FLEETBAKE_USER=buildbot FLEETBAKE_CCACHE_WRAPPERS=/usr/lib64/ccache",
    "VOLUME [\"/buildarea\"]",
    "WORKDIR /buildarea",
    "LABEL org.opencontainers.image.source=https://github.com/python/fleetbake org.opencontainers.image.title=\"CPython buildbot worker (fedora-44)\" org.opencontainers.image.base.name=registry.fedoraproject.org/fedora:44 io.fleetbake.row=fedora-44 io.fleetbake.worker-version=4.3.0 io.fleetbake.fleetbake-version=0.1.0",
    "HEALTHCHECK --interval=30s --timeout=10s --start-period=2m --retries=3 CMD [\"/usr/bin/python3\", \"-I\", \"-m\", \"fleetbake.worker.entrypoint\", \"health\"]",
    "ENTRYPOINT [\"/usr/bin/tini\", \"-e\", \"143\", \"--\", \"/usr/bin/python3\", \"-I\", \"-m\", \"fleetbake.worker.entrypoint\"]",
    "CMD [\"worker\"]",
    "LABEL ${var.labels}",
  ]
}


build {
  name = "fleetbake"
  sources = [
    "source.docker.worker",
  ]

  provisioner "shell" {
    inline = [
      "rm -rf /tmp/fleetbake-context",
      "mkdir -p /tmp/fleetbake-context",
    ]
  }


  provisioner "file" {
    source      = "${path.root}/${var.context}/"
    destination = "/tmp/fleetbake-context"
  }


  provisioner "shell" {
    inline = [
      "install -d -m 0755 /opt/fleetbake/provision",
      "install -o root -g root -m 0755 /tmp/fleetbake-context/layers/1/opt/fleetbake/provision/configure-dnf.sh /opt/fleetbake/provision/",
      "install -o root -g root -m 0755 /tmp/fleetbake-context/layers/1/opt/fleetbake/provision/install-packages.sh /opt/fleetbake/provision/",
      "install -o root -g root -m 0644 /tmp/fleetbake-context/layers/1/opt/fleetbake/provision/packages.txt /opt/fleetbake/provision/",
      "install -o root -g root -m 0755 /tmp/fleetbake-context/layers/1/opt/fleetbake/provision/normalize-layer.sh /opt/fleetbake/provision/",
      "/opt/fleetbake/provision/configure-dnf.sh",
      "/opt/fleetbake/provision/install-packages.sh /opt/fleetbake/provision/packages.txt",
    ]
    environment_vars = [
      "SOURCE_DATE_EPOCH=${var.source_date_epoch}",
    ]
  }


  provisioner "shell" {
    inline = [
      "install -d -m 0755 /opt/fleetbake/ca-certificates",
      "(cd /tmp/fleetbake-context/layers/2/opt/fleetbake/ca-certificates/ && find . -mindepth 1 -type d -exec install -d -m 0755 /opt/fleetbake/ca-certificates/{} \\; && find . -type f -exec install -o root -g root -m 0644 {} /opt/fleetbake/ca-certificates/{} \\;)",
      "install -d -m 0755 /opt/fleetbake/provision",
      "install -o root -g root -m 0755 /tmp/fleetbake-context/layers/2/opt/fleetbake/provision/install-ca.sh /opt/fleetbake/provision/",
      "install -o root -g root -m 0755 /tmp/fleetbake-context/layers/2/opt/fleetbake/provision/create-user.sh /opt/fleetbake/provision/",
      "install -o root -g root -m 0755 /tmp/fleetbake-context/layers/2/opt/fleetbake/provision/configure-ccache.sh /opt/fleetbake/provision/",
      "install -o root -g root -m 0755 /tmp/fleetbake-context/layers/2/opt/fleetbake/provision/install-worker.sh /opt/fleetbake/provision/",
      "install -o root -g root -m 0644 /tmp/fleetbake-context/layers/2/opt/fleetbake/provision/worker-requirements.txt /opt/fleetbake/provision/",
      "/opt/fleetbake/provision/install-ca.sh /opt/fleetbake/ca-certificates",
      "WORKER_USER=buildbot WORKER_UID=1000 /opt/fleetbake/provision/create-user.sh",
      "WORKER_USER=buildbot WRAPPER_DIR=/usr/lib64/ccache CACHE_DIR=/ccache MAX_SIZE=5G /opt/fleetbake/provision/configure-ccache.sh",
      "BUILDBOT_WORKER_VERSION=4.3.0 WORKER_REQUIREMENTS=/opt/fleetbake/provision/worker-requirements.txt /opt/fleetbake/provision/install-worker.sh",
    ]
    environment_vars = [
      "SOURCE_DATE_EPOCH=${var.source_date_epoch}",
    ]
  }


  provisioner "shell" {
    inline = [
      "install -d -m 0755 /opt/fleetbake/fleetbake",
      "(cd /tmp/fleetbake-context/layers/3/opt/fleetbake/fleetbake/ && find . -mindepth 1 -type d -exec install -d -m 0755 /opt/fleetbake/fleetbake/{} \\; && find . -type f -exec install -o root -g root -m 0644 {} /opt/fleetbake/fleetbake/{} \\;)",
      "install -d -m 0755 /opt/fleetbake/provision",
      "install -o root -g root -m 0755 /tmp/fleetbake-context/layers/3/opt/fleetbake/provision/install-fleetbake.sh /opt/fleetbake/provision/",
      "/opt/fleetbake/provision/install-fleetbake.sh",
    ]
    environment_vars = [
      "SOURCE_DATE_EPOCH=${var.source_date_epoch}",
    ]
  }


  provisioner "shell" {
    inline = [
      "rm -rf /tmp/fleetbake-context",
      "mkdir -p /buildarea",
    ]
  }


  post-processor "docker-tag" {
    repository = "fleetbake/worker"
    tags = [
      "fedora-44-packer",
    ]
  }
}
