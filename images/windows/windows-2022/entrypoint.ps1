# Generated from matrix.yml (row windows-2022) by fleetbake: do not edit. Change the matrix, images/ or fleetbake/worker/, then run `invoke render`.
##  File:  entrypoint.ps1
##  Desc:  Windows worker entrypoint: the Linux images' contract (WORKERNAME, WORKERPASS or WORKERPASS_FILE, BUILDMASTER, KEEPALIVE, WORKER_ADMIN, info/host).
param([string] $Command = 'worker')
$ErrorActionPreference = 'Stop'

function Fail([string] $Message) {
    [Console]::Error.WriteLine("fleetbake-worker: error: $Message")
    exit 2
}

$basedir = 'C:\buildarea'
$health = Join-Path $env:TEMP 'fleetbake-worker.health'
if ($Command -eq 'health') {
    if ((Test-Path $health) -and ((Get-Content $health) -like 'connected*')) { exit 0 }
    exit 1
}

if (-not $env:WORKERNAME) { Fail 'WORKERNAME is not set: pass -e WORKERNAME=<the name the fleet admins gave you>' }
if ($env:WORKERPASS -and $env:WORKERPASS_FILE) { Fail 'set WORKERPASS or WORKERPASS_FILE, not both' }
$password = $env:WORKERPASS
if ($env:WORKERPASS_FILE) { $password = (Get-Content -Raw $env:WORKERPASS_FILE).TrimEnd("`r", "`n") }
if (-not $password) { Fail 'no password: pass -e WORKERPASS=... or mount a file and set WORKERPASS_FILE' }

$master = if ($env:BUILDMASTER) { $env:BUILDMASTER } else { 'buildbot-api.python.org' }
$port = if ($env:BUILDMASTER_PORT) { $env:BUILDMASTER_PORT } else { '9020' }
if ($master -match '^(.+):(\d+)$') { $master = $Matches[1]; $port = $Matches[2] }
$keepalive = if ($env:KEEPALIVE) { $env:KEEPALIVE } else { '60' }

New-Item -ItemType Directory -Force -Path (Join-Path $basedir 'info') | Out-Null
$admin = if ($env:WORKER_ADMIN) { $env:WORKER_ADMIN } else { "(not set: run the container with -e WORKER_ADMIN='Your Name <you@example.org>')" }
Set-Content -Path (Join-Path $basedir 'info\admin') -Value $admin
if ($env:WORKER_HOST_INFO) {
    Set-Content -Path (Join-Path $basedir 'info\host') -Value $env:WORKER_HOST_INFO
} else {
    $os = Get-CimInstance Win32_OperatingSystem
    $cpu = Get-CimInstance Win32_Processor | Select-Object -First 1
    $version = & C:\buildbot-worker\Scripts\buildbot-worker.exe --version
    Set-Content -Path (Join-Path $basedir 'info\host') -Value @(
        "OS: $($os.Caption) $($os.Version) ($env:FLEETBAKE_IMAGE)",
        "CPU: $([Environment]::ProcessorCount) x $($cpu.Name)",
        "Memory: $([math]::Round($os.TotalVisibleMemorySize / 1mb, 1)) GiB",
        "buildbot-worker: $version"
    )
}

# The password reaches the tac through the environment of this one process only.
$env:FLEETBAKE_WORKERPASS = $password
Remove-Item Env:WORKERPASS -ErrorAction SilentlyContinue
Remove-Item Env:WORKERPASS_FILE -ErrorAction SilentlyContinue
$tac = @"
import os
from twisted.application import service
from buildbot_worker.bot import Worker
passwd = os.environ.pop('FLEETBAKE_WORKERPASS')
application = service.Application('buildbot-worker')
worker = Worker('$master', $port, os.environ['WORKERNAME'], passwd, r'$basedir', $keepalive, umask=None,
                maxRetries=int(os.environ.get('MAXRETRIES', '10')), allow_shutdown='file',
                delete_leftover_dirs=True)
worker.setServiceParent(application)
health = r'$health'
got_perspective = worker.bf.gotPerspective
def on_login(perspective):
    got_perspective(perspective)
    open(health, 'w').write('connected')
    perspective.broker.notifyOnDisconnect(lambda: open(health, 'w').write('disconnected'))
worker.bf.gotPerspective = on_login
"@
$tacPath = Join-Path $env:TEMP 'buildbot.tac'
Set-Content -Path $tacPath -Value $tac
Set-Content -Path $health -Value 'starting'
# One quoted string per argument: a bare --python=(...) would reach twistd as two arguments.
& C:\buildbot-worker\Scripts\twistd.exe '--nodaemon' '--pidfile=' '--logfile=-' "--python=$tacPath"
exit $LASTEXITCODE
