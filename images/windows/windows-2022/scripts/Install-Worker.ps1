# Generated from matrix.yml (row windows-2022) by fleetbake: do not edit. Change the matrix, images/ or fleetbake/worker/, then run `invoke render`.
##  File:  Install-Worker.ps1
##  Desc:  Install the pinned buildbot-worker (and pywin32) into its own virtualenv, apart from any Python being built.
param([Parameter(Mandatory)] [string] $WorkerVersion)
$ErrorActionPreference = 'Stop'

& C:\Python\python.exe -m venv C:\buildbot-worker
if ($LASTEXITCODE -ne 0) { throw 'python -m venv failed' }
& C:\buildbot-worker\Scripts\python.exe -m pip install --no-cache-dir --disable-pip-version-check "buildbot-worker==$WorkerVersion" pywin32
if ($LASTEXITCODE -ne 0) { throw 'pip install buildbot-worker failed' }
New-Item -ItemType Directory -Force -Path C:\buildarea | Out-Null
