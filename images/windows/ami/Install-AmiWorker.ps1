##  File:  Install-AmiWorker.ps1
##  Desc:  Packer's last step on a fleetbake Windows AMI (as Administrator): the buildbot user, the firewall rule
##         that keeps it from the instance metadata service, and two tasks: fleetbake-worker-config (SYSTEM, at
##         startup: reads the name and password, supervises the worker) and buildbot-worker (the buildbot user,
##         started only by fleetbake-worker-config). Nothing secret is baked in.
$ErrorActionPreference = 'Stop'

# A standard user whose random password is never written down (Task Scheduler keeps it for the task).
Add-Type -AssemblyName System.Web  # Windows PowerShell does not load it by default
$password = [System.Web.Security.Membership]::GeneratePassword(32, 4)
$secure = ConvertTo-SecureString $password -AsPlainText -Force
New-LocalUser -Name buildbot -Password $secure -PasswordNeverExpires -AccountNeverExpires | Out-Null
$sid = (Get-LocalUser -Name buildbot).SID.Value
New-Item -ItemType Directory -Force -Path C:/buildarea | Out-Null
icacls C:/buildarea /grant 'buildbot:(OI)(CI)M' | Out-Null

# Build steps run as buildbot: they must not reach the metadata service (user data holds the password, and the
# instance role's credentials would open SSM). Every protocol, IPv4 and IPv6, for that user's SID only; SYSTEM
# (fleetbake-worker-config) still reaches it.
New-NetFirewallRule -Name fleetbake-block-imds-buildbot -DisplayName 'fleetbake: buildbot may not reach the instance metadata service' `
    -Direction Outbound -Action Block -RemoteAddress '169.254.169.254', 'fd00:ec2::254' -LocalUser "O:LSD:(A;;CC;;;$sid)" `
    -Profile Any -Enabled True | Out-Null

New-EventLog -LogName Application -Source fleetbake -ErrorAction SilentlyContinue  # worker-config.ps1's errors

# Settings and the password land here at boot: SYSTEM and Administrators only, buildbot may list it.
$config = 'C:\ProgramData\fleetbake\worker'
New-Item -ItemType Directory -Force -Path $config | Out-Null
icacls $config /inheritance:r /grant:r '*S-1-5-18:(OI)(CI)F' '*S-1-5-32-544:(OI)(CI)F' "*${sid}:(RX)" | Out-Null

# buildbot-worker has no trigger: only the SYSTEM step starts it, once the password is in place.
$worker = New-ScheduledTaskAction -Execute 'powershell.exe' -WorkingDirectory 'C:\buildarea' `
    -Argument '-NoProfile -ExecutionPolicy Bypass -File C:\fleetbake\ami\start-worker.ps1'
$once = New-ScheduledTaskSettingsSet -ExecutionTimeLimit ([TimeSpan]::Zero) -MultipleInstances IgnoreNew
Register-ScheduledTask -TaskName buildbot-worker -Action $worker -Settings $once -User buildbot -Password $password -RunLevel Limited | Out-Null
Remove-Variable -Name 'password', 'secure'

$config_task = New-ScheduledTaskAction -Execute 'powershell.exe' `
    -Argument '-NoProfile -ExecutionPolicy Bypass -File C:\fleetbake\ami\worker-config.ps1'
Register-ScheduledTask -TaskName fleetbake-worker-config -Action $config_task -Trigger (New-ScheduledTaskTrigger -AtStartup) `
    -Settings $once -User SYSTEM -RunLevel Highest | Out-Null

# Packer's WinRM listener must outlive the build, not reach the fleet's instances: their first boot removes it.
$close = 'Get-ChildItem WSMan:/LocalHost/Listener | Where-Object Keys -Contains Transport=HTTPS | Remove-Item -Recurse -Force; ' +
    'Remove-NetFirewallRule -DisplayName WinRM-HTTPS -ErrorAction SilentlyContinue; ' +
    'Unregister-ScheduledTask -TaskName fleetbake-close-winrm -Confirm:$false'
Register-ScheduledTask -TaskName fleetbake-close-winrm -Trigger (New-ScheduledTaskTrigger -AtStartup) -User SYSTEM -RunLevel Highest `
    -Action (New-ScheduledTaskAction -Execute 'powershell.exe' -Argument "-NoProfile -Command $close") | Out-Null
