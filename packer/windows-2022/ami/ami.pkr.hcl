# Generated from matrix.yml (row windows-2022) by fleetbake: do not edit. Change the matrix, images/ or fleetbake/worker/, then run `invoke render`.
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
  default     = "m5.xlarge"
}


variable "inputs_hash_amd64" {
  type        = string
  description = "amd64: fleetbake inputs hash, for the tags"
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
  default     = "../../../images/windows/windows-2022"
}


variable "images" {
  type        = string
  description = "this checkout's images/, relative to this folder"
  default     = "../../../images"
}


variable "winrm_timeout" {
  type        = string
  description = "how long to wait for WinRM on the build instance"
  default     = "30m"
}


source "amazon-ebs" "windows-amd64" {
  communicator   = "winrm"
  winrm_username = "Administrator"
  winrm_use_ssl  = true
  winrm_insecure = true
  winrm_timeout  = var.winrm_timeout
  user_data_file = "${path.root}/${var.images}/windows/ami/winrm-bootstrap.ps1"
  region         = var.region
  profile        = var.profile
  instance_type  = var.instance_type_amd64
  ami_name       = "fleetbake-windows-2022-amd64-${var.configuration}-${formatdate("YYYYMMDDhhmmss", timestamp())}"

  source_ami_filter {
    filters = {
      "name"                = "Windows_Server-2022-English-Full-Base-*",
      "virtualization-type" = "hvm",
      "root-device-type"    = "ebs",
      "architecture"        = "x86_64",
    }
    owners = [
      "amazon",
    ]
    most_recent = true
  }


  launch_block_device_mappings {
    device_name           = "/dev/sda1"
    volume_size           = 60
    volume_type           = "gp3"
    iops                  = 3000
    throughput            = 125
    delete_on_termination = true
  }

  tags = {
    "Name"                    = "fleetbake-windows-2022-amd64-${var.configuration}",
    "fleetbake"               = "true",
    "fleetbake-row"           = "windows-2022",
    "fleetbake-arch"          = "amd64",
    "fleetbake-configuration" = var.configuration,
    "fleetbake-inputs-hash"   = var.inputs_hash_amd64,
    "fleetbake-date"          = formatdate("YYYY-MM-DD", timestamp()),
  }
  run_tags = {
    "fleetbake"      = "true",
    "fleetbake-row"  = "windows-2022",
    "fleetbake-arch" = "amd64",
  }
  custom_endpoint_ec2    = var.ec2_endpoint
  skip_region_validation = var.ec2_endpoint != ""
}


build {
  name = "fleetbake"
  sources = [
    "source.amazon-ebs.windows-amd64",
  ]

  provisioner "file" {
    source      = "${path.root}/${var.context}/scripts/"
    destination = "C:/fleetbake/provision/"
  }


  provisioner "file" {
    sources = [
      "${path.root}/${var.context}/packages.txt",
    ]
    destination = "C:/fleetbake/provision/"
  }


  provisioner "powershell" {
    inline = [
      "C:/fleetbake/provision/Install-BuildTools.ps1 -PackagesFile C:/fleetbake/provision/packages.txt",
    ]
  }


  provisioner "file" {
    source      = "${path.root}/${var.context}/ca-certificates/"
    destination = "C:/fleetbake/ca-certificates/"
  }


  provisioner "powershell" {
    inline = [
      "C:/fleetbake/provision/Install-CaCertificates.ps1 -Path C:/fleetbake/ca-certificates",
    ]
  }


  provisioner "powershell" {
    inline = [
      "C:/fleetbake/provision/Install-Worker.ps1 -WorkerVersion 4.3.0",
    ]
  }


  provisioner "file" {
    sources = [
      "${path.root}/${var.context}/entrypoint.ps1",
    ]
    destination = "C:/fleetbake/"
  }


  provisioner "file" {
    source      = "${path.root}/${var.images}/windows/ami/"
    destination = "C:/fleetbake/ami/"
  }


  provisioner "windows-restart" {

  }


  provisioner "powershell" {
    inline = [
      "C:/fleetbake/ami/Install-AmiWorker.ps1",
    ]
  }


  post-processor "manifest" {
    output     = "manifest.json"
    strip_path = true
  }
}
