# Generated from matrix.yml (row windows-2022) by fleetbake: do not edit. Change the matrix, images/ or fleetbake/worker/, then run `invoke render`.
##  File:  Install-BuildTools.ps1
##  Desc:  Install Visual Studio Build Tools (the listed workloads), Git and Python, as CPython's PCbuild needs.
param([Parameter(Mandatory)] [string] $PackagesFile)
$ErrorActionPreference = 'Stop'

$components = Get-Content $PackagesFile | ForEach-Object { ($_ -replace '#.*', '').Trim() } | Where-Object { $_ }
$vsArgs = @('--quiet', '--wait', '--norestart', '--nocache', '--installPath', 'C:\BuildTools')
foreach ($component in $components | Where-Object { $_ -like 'Microsoft.VisualStudio.*' }) {
    $vsArgs += @('--add', $component)
}
Invoke-WebRequest -Uri 'https://aka.ms/vs/17/release/vs_buildtools.exe' -OutFile "$env:TEMP\vs_buildtools.exe"
$process = Start-Process -FilePath "$env:TEMP\vs_buildtools.exe" -ArgumentList $vsArgs -Wait -PassThru
if ($process.ExitCode -notin 0, 3010) { throw "vs_buildtools failed with exit code $($process.ExitCode)" }
Remove-Item "$env:TEMP\vs_buildtools.exe"

$git = $components | Where-Object { $_ -like 'git=*' } | ForEach-Object { $_.Split('=')[1] }
Invoke-WebRequest -Uri "https://github.com/git-for-windows/git/releases/download/v$git.windows.1/MinGit-$git-64-bit.zip" -OutFile "$env:TEMP\mingit.zip"
Expand-Archive "$env:TEMP\mingit.zip" -DestinationPath 'C:\Git'
Remove-Item "$env:TEMP\mingit.zip"

$python = $components | Where-Object { $_ -like 'python=*' } | ForEach-Object { $_.Split('=')[1] }
Invoke-WebRequest -Uri "https://www.python.org/ftp/python/$python/python-$python-amd64.exe" -OutFile "$env:TEMP\python.exe"
$process = Start-Process -FilePath "$env:TEMP\python.exe" -ArgumentList @('/quiet', 'InstallAllUsers=1', 'PrependPath=1', 'Include_test=0', 'TargetDir=C:\Python') -Wait -PassThru
if ($process.ExitCode -ne 0) { throw "the Python installer failed with exit code $($process.ExitCode)" }
Remove-Item "$env:TEMP\python.exe"

[Environment]::SetEnvironmentVariable('Path', "C:\Git\cmd;C:\Python;C:\Python\Scripts;$env:Path", 'Machine')
