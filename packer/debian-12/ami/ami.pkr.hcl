# Generated from matrix.yml (row debian-12) by fleetbake: do not edit. Change the matrix, images/ or fleetbake/worker/, then run `invoke render`.
variable "region" {
  type        = string
  description = "AWS region"
  default     = "us-east-1"
}


variable "profile" {
  type        = string
  description = "AWS profile (credentials stay in ~/.aws or the environment)"
  default     = ""
}


variable "configuration" {
  type        = string
  description = "the configuration, for the AMI's name and tags"
  default     = "pydebug"
}


variable "instance_type_amd64" {
  type        = string
  description = "amd64: from matrix.yml"
  default     = "m5.large"
}


variable "inputs_hash_amd64" {
  type        = string
  description = "amd64: fleetbake inputs hash, for the tags"
  default     = "unknown"
}


variable "instance_type_arm64" {
  type        = string
  description = "arm64: from matrix.yml"
  default     = "m7g.large"
}


variable "inputs_hash_arm64" {
  type        = string
  description = "arm64: fleetbake inputs hash, for the tags"
  default     = "unknown"
}


variable "ec2_endpoint" {
  type        = string
  description = "EC2 API endpoint override (tests use moto on loopback)"
  default     = ""
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


variable "ssh_timeout" {
  type        = string
  description = "how long to wait for SSH on the build instance"
  default     = "5m"
}


source "amazon-ebs" "worker-amd64" {
  communicator  = "ssh"
  ssh_username  = "admin"
  ssh_timeout   = var.ssh_timeout
  region        = var.region
  profile       = var.profile
  instance_type = var.instance_type_amd64
  ami_name      = "fleetbake-debian-12-amd64-${var.configuration}-${formatdate("YYYYMMDDhhmmss", timestamp())}"

  source_ami_filter {
    filters = {
      "name"                = "debian-12-amd64-*",
      "virtualization-type" = "hvm",
      "root-device-type"    = "ebs",
      "architecture"        = "x86_64",
    }
    owners = [
      "136693071363",
    ]
    most_recent = true
  }


  launch_block_device_mappings {
    device_name           = "/dev/xvda"
    volume_size           = 30
    volume_type           = "gp3"
    iops                  = 3000
    throughput            = 125
    delete_on_termination = true
  }

  tags = {
    "Name"                    = "fleetbake-debian-12-amd64-${var.configuration}",
    "fleetbake"               = "true",
    "fleetbake-row"           = "debian-12",
    "fleetbake-arch"          = "amd64",
    "fleetbake-configuration" = var.configuration,
    "fleetbake-inputs-hash"   = var.inputs_hash_amd64,
    "fleetbake-date"          = formatdate("YYYY-MM-DD", timestamp()),
  }
  run_tags = {
    "fleetbake"      = "true",
    "fleetbake-row"  = "debian-12",
    "fleetbake-arch" = "amd64",
  }
  custom_endpoint_ec2    = var.ec2_endpoint
  skip_region_validation = var.ec2_endpoint != ""
}


source "amazon-ebs" "worker-arm64" {
  communicator  = "ssh"
  ssh_username  = "admin"
  ssh_timeout   = var.ssh_timeout
  region        = var.region
  profile       = var.profile
  instance_type = var.instance_type_arm64
  ami_name      = "fleetbake-debian-12-arm64-${var.configuration}-${formatdate("YYYYMMDDhhmmss", timestamp())}"

  source_ami_filter {
    filters = {
      "name"                = "debian-12-arm64-*",
      "virtualization-type" = "hvm",
      "root-device-type"    = "ebs",
      "architecture"        = "arm64",
    }
    owners = [
      "136693071363",
    ]
    most_recent = true
  }


  launch_block_device_mappings {
    device_name           = "/dev/xvda"
    volume_size           = 30
    volume_type           = "gp3"
    iops                  = 3000
    throughput            = 125
    delete_on_termination = true
  }

  tags = {
    "Name"                    = "fleetbake-debian-12-arm64-${var.configuration}",
    "fleetbake"               = "true",
    "fleetbake-row"           = "debian-12",
    "fleetbake-arch"          = "arm64",
    "fleetbake-configuration" = var.configuration,
    "fleetbake-inputs-hash"   = var.inputs_hash_arm64,
    "fleetbake-date"          = formatdate("YYYY-MM-DD", timestamp()),
  }
  run_tags = {
    "fleetbake"      = "true",
    "fleetbake-row"  = "debian-12",
    "fleetbake-arch" = "arm64",
  }
  custom_endpoint_ec2    = var.ec2_endpoint
  skip_region_validation = var.ec2_endpoint != ""
}


build {
  name = "fleetbake"
  sources = [
    "source.amazon-ebs.worker-amd64",
    "source.amazon-ebs.worker-arm64",
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


  post-processor "manifest" {
    output     = "manifest.json"
    strip_path = true
  }
}
