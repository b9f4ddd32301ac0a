<powershell>
# EC2 user data for the Packer build only: WinRM over HTTPS with a throw-away certificate,
# so that Packer can provision. The finished AMI's own user data carries the worker settings.
Set-ExecutionPolicy RemoteSigned -Scope LocalMachine -Force
$certificate = New-SelfSignedCertificate -CertStoreLocation Cert:\LocalMachine\My -DnsName 'packer'
winrm quickconfig -quiet
New-Item -Path WSMan:\LocalHost\Listener -Transport HTTPS -Address * -CertificateThumbPrint $certificate.Thumbprint -Force
netsh advfirewall firewall add rule name='WinRM-HTTPS' dir=in localport=5986 protocol=TCP action=allow
</powershell>
