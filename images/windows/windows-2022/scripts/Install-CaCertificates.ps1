# Generated from matrix.yml (row windows-2022) by fleetbake: do not edit. Change the matrix, images/ or fleetbake/worker/, then run `invoke render`.
##  File:  Install-CaCertificates.ps1
##  Desc:  Trust extra CA certificates (a corporate TLS proxy) machine-wide, for git, pip and CPython's ssl.
param([Parameter(Mandatory)] [string] $Path)
$ErrorActionPreference = 'Stop'

$certificates = Get-ChildItem -Path $Path -Filter '*.crt'
foreach ($certificate in $certificates) {
    Import-Certificate -FilePath $certificate.FullName -CertStoreLocation 'Cert:\LocalMachine\Root' | Out-Null
}
Write-Output "Install-CaCertificates: trusted $($certificates.Count) extra CA certificate(s)"
