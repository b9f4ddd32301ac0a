##  File:  worker-config.ps1
##  Desc:  The fleetbake-worker-config task (SYSTEM, at startup): read the worker's settings from EC2 user data
##         (IMDSv2, KEY=VALUE lines) and its password from user data (WORKERPASS=) or SSM Parameter Store
##         (WORKERPASS_SSM=, a SecureString the instance role may ssm:GetParameter), then supervise the
##         buildbot-worker task: hand it the password in a file it reads once and deletes, restart it when it
##         fails, power the instance off when the worker gives up on its master (exit 0 after MAXRETRIES).
$ErrorActionPreference = 'Stop'
$config = 'C:\ProgramData\fleetbake\worker'
$secret = Join-Path $config 'workerpass'

function Fail([string] $Message) {
    Write-EventLog -LogName Application -Source fleetbake -EventId 1 -EntryType Error -Message $Message -ErrorAction SilentlyContinue
    [Console]::Error.WriteLine("fleetbake-worker-config: $Message")
    exit 1
}

function Get-Imds([string] $Path) {
    $token = Invoke-RestMethod -Method Put -Uri 'http://169.254.169.254/latest/api/token' `
        -Headers @{ 'X-aws-ec2-metadata-token-ttl-seconds' = '300' } -TimeoutSec 10
    Invoke-RestMethod -Uri "http://169.254.169.254/latest/$Path" -Headers @{ 'X-aws-ec2-metadata-token' = $token } -TimeoutSec 10
}

# Fail closed: without the firewall rule, build steps could read the password back from user data.
$rule = Get-NetFirewallRule -Name fleetbake-block-imds-buildbot -ErrorAction SilentlyContinue
if (-not $rule -or $rule.Enabled -ne 'True' -or $rule.Action -ne 'Block') {
    Fail 'the firewall rule fleetbake-block-imds-buildbot is missing or disabled: not starting the worker'
}

$userData = $null
foreach ($attempt in 1..10) {  # the metadata service may not answer this early in boot
    try {
        $region = Get-Imds 'meta-data/placement/region'
        $userData = Get-Imds 'user-data'
        break
    } catch {
        if ($attempt -eq 10) { Fail "instance metadata service: $($_.Exception.Message)" }
        Start-Sleep -Seconds 3
    }
}

$settings = [ordered]@{ MAXRETRIES = '30' }
foreach ($line in ("$userData" -split "`n")) {
    if ($line.TrimEnd("`r") -match '^([A-Z_][A-Z0-9_]*)=(.*)$') { $settings[$Matches[1]] = $Matches[2] }
}
$password = $settings['WORKERPASS']
$parameter = $settings['WORKERPASS_SSM']
foreach ($key in 'WORKERPASS', 'WORKERPASS_SSM', 'WORKERPASS_FILE') { $settings.Remove($key) }
if ($parameter) {
    # AWS Tools for PowerShell come with Amazon's Windows AMIs; SYSTEM gets the instance role's credentials.
    Import-Module AWSPowerShell
    $password = (Get-SSMParameter -Name $parameter -WithDecryption $true -Region $region).Value
}
if (-not $settings['WORKERNAME'] -or -not $password) {
    Fail 'user data needs WORKERNAME= and WORKERPASS= (or WORKERPASS_SSM=) lines'
}
Set-Content -Path (Join-Path $config 'worker.env') -Value @($settings.Keys | ForEach-Object { "$_=$($settings[$_])" })
icacls (Join-Path $config 'worker.env') /grant 'buildbot:(R)' | Out-Null

while ($true) {
    # Written while only SYSTEM and Administrators may read it, then opened to buildbot for one read and a delete.
    Set-Content -Path $secret -Value $password -NoNewline
    icacls $secret /grant 'buildbot:(R,D)' | Out-Null
    Start-ScheduledTask -TaskName buildbot-worker
    Start-Sleep -Seconds 5
    while ((Get-ScheduledTask -TaskName buildbot-worker).State -in 'Queued', 'Running') { Start-Sleep -Seconds 5 }
    Remove-Item -Force $secret -ErrorAction SilentlyContinue  # a worker that died before reading it
    $result = (Get-ScheduledTaskInfo -TaskName buildbot-worker).LastTaskResult
    if ($result -eq 0) {
        # twistd exits 0 on its own after MAXRETRIES failed connects: the master is gone, stop paying for it.
        Stop-Computer -Force
        exit 0
    }
    Start-Sleep -Seconds 10
}
