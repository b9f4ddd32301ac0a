# Generated from matrix.yml (row debian-12) by fleetbake: do not edit. Change the matrix, images/ or fleetbake/worker/, then run `invoke render`.
variable "base" {
  type        = string
  description = "base image (locally bootstrapped: pull = false)"
  default     = "debian:12"
}


variable "context" {
  type        = string
  description = "the build context, relative to this folder (invoke packer passes build/contexts/<row>/, which adds the host's extra CA certificates)"
  default     = "../../../images/debian/debian-12"
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


source "docker" "rehearsal" {
  image         = var.base
  commit        = true
  pull          = false
  container_dir = "/mnt"
  changes = [
    "ENTRYPOINT [\"/sbin/init\"]",
    "CMD []",
    "ENV container=docker",
    "LABEL io.fleetbake.row=debian-12 io.fleetbake.builder=packer-ami-rehearsal",
  ]
}


build {
  name = "fleetbake"
  sources = [
    "source.docker.rehearsal",
  ]

  provisioner "shell" {
    inline = [
      "apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -qq -y --no-install-recommends systemd systemd-sysv sudo dbus >/dev/null && rm -rf /var/lib/apt/lists/*",
      "useradd --create-home --user-group --uid 1000 admin",
    ]
  }


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


  provisioner "file" {
    source      = "${path.root}/${var.images}/ami/"
    destination = "/tmp/fleetbake-context/ami"
  }


  provisioner "shell" {
    inline = [
      "install -d -m 0755 /opt/fleetbake/provision",
      "install -o root -g root -m 0755 /tmp/fleetbake-context/layers/1/opt/fleetbake/provision/configure-apt.sh /opt/fleetbake/provision/",
      "install -o root -g root -m 0755 /tmp/fleetbake-context/layers/1/opt/fleetbake/provision/install-packages.sh /opt/fleetbake/provision/",
      "install -o root -g root -m 0644 /tmp/fleetbake-context/layers/1/opt/fleetbake/provision/packages.txt /opt/fleetbake/provision/",
      "install -o root -g root -m 0755 /tmp/fleetbake-context/layers/1/opt/fleetbake/provision/normalize-layer.sh /opt/fleetbake/provision/",
      "/opt/fleetbake/provision/configure-apt.sh",
      "/opt/fleetbake/provision/install-packages.sh /opt/fleetbake/provision/packages.txt",
    ]
    environment_vars = [
      "SOURCE_DATE_EPOCH=${var.source_date_epoch}",
    ]
    execute_command = "sudo -E sh -c '{{ .Vars }} {{ .Path }}'"
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
      "WORKER_USER=buildbot WORKER_UID=1001 /opt/fleetbake/provision/create-user.sh",
      "WORKER_USER=buildbot WRAPPER_DIR=/usr/lib/ccache CACHE_DIR=/ccache MAX_SIZE=5G /opt/fleetbake/provision/configure-ccache.sh",
      "BUILDBOT_WORKER_VERSION=4.3.0 WORKER_REQUIREMENTS=/opt/fleetbake/provision/worker-requirements.txt WORKER_PIP_EXTRAS=boto3 /opt/fleetbake/provision/install-worker.sh",
    ]
    environment_vars = [
      "SOURCE_DATE_EPOCH=${var.source_date_epoch}",
    ]
    execute_command = "sudo -E sh -c '{{ .Vars }} {{ .Path }}'"
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
    execute_command = "sudo -E sh -c '{{ .Vars }} {{ .Path }}'"
  }


  provisioner "shell" {
    inline = [
      "install -d -m 0755 /etc/systemd/system",
      "install -o root -g root -m 0644 /tmp/fleetbake-context/ami/fleetbake-worker.service /etc/systemd/system/",
      "install -o root -g root -m 0644 /tmp/fleetbake-context/ami/fleetbake-worker-config.service /etc/systemd/system/",
      "install -d -m 0755 /opt/fleetbake",
      "install -o root -g root -m 0755 /tmp/fleetbake-context/ami/fleetbake-worker-config /opt/fleetbake/",
      "install -o root -g root -m 0755 /tmp/fleetbake-context/ami/fleetbake-latent-stop /opt/fleetbake/",
      "install -d -m 0755 /etc/systemd/system/fleetbake-worker.service.d && printf '%s\\n' '[Service]' 'Environment=\"PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin\"' 'Environment=\"LANG=C.UTF-8\"' 'Environment=\"FLEETBAKE_ROW=debian-12\"' 'Environment=\"FLEETBAKE_IMAGE=fleetbake/worker:debian-12\"' 'Environment=\"FLEETBAKE_USER=buildbot\"' 'Environment=\"FLEETBAKE_CCACHE_WRAPPERS=/usr/lib/ccache\"' > /etc/systemd/system/fleetbake-worker.service.d/image.conf && chmod 0644 /etc/systemd/system/fleetbake-worker.service.d/image.conf",
      "systemctl enable fleetbake-worker-config.service fleetbake-worker.service",
    ]
    environment_vars = [
      "SOURCE_DATE_EPOCH=${var.source_date_epoch}",
    ]
    execute_command = "sudo -E sh -c '{{ .Vars }} {{ .Path }}'"
  }


  provisioner "shell" {
    inline = [
      "rm -rf /tmp/fleetbake-context",
      "mkdir -p /buildarea",
    ]
    execute_command = "sudo -E sh -c '{{ .Vars }} {{ .Path }}'"
  }


  post-processor "docker-tag" {
    repository = "fleetbake/worker"
    tags = [
      "debian-12-ami-rehearsal",
    ]
  }
}
