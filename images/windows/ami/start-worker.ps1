##  File:  start-worker.ps1
##  Desc:  The buildbot-worker task on a fleetbake Windows AMI (as buildbot, started by fleetbake-worker-config):
##         the settings from worker.env, the password read once from a file SYSTEM wrote and deleted at once,
##         then entrypoint.ps1. This user cannot reach the metadata service (firewall rule).
$ErrorActionPreference = 'Stop'
$config = 'C:\ProgramData\fleetbake\worker'

foreach ($line in Get-Content (Join-Path $config 'worker.env')) {
    if ($line -match '^([A-Z_][A-Z0-9_]*)=(.*)$') { Set-Item -Path "Env:$($Matches[1])" -Value $Matches[2] }
}
$secret = Join-Path $config 'workerpass'
$env:WORKERPASS = Get-Content -Raw $secret
Remove-Item -Force $secret  # the build steps this worker runs later find no file
& C:/fleetbake/entrypoint.ps1 worker
exit $LASTEXITCODE
