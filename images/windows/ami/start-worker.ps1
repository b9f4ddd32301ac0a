##  File:  start-worker.ps1
##  Desc:  On a fleetbake Windows AMI: read the worker settings from EC2 user data (KEY=VALUE lines), then start entrypoint.ps1.
$ErrorActionPreference = 'Stop'

$token = Invoke-RestMethod -Method Put -Uri 'http://169.254.169.254/latest/api/token' -Headers @{ 'X-aws-ec2-metadata-token-ttl-seconds' = '300' }
$userData = Invoke-RestMethod -Uri 'http://169.254.169.254/latest/user-data' -Headers @{ 'X-aws-ec2-metadata-token' = $token }
foreach ($line in ($userData -split "`n")) {
    if ($line -match '^([A-Z_][A-Z0-9_]*)=(.*)$') {
        Set-Item -Path "Env:$($Matches[1])" -Value $Matches[2].TrimEnd("`r")
    }
}
& C:/fleetbake/entrypoint.ps1 worker
exit $LASTEXITCODE
