<#
.SYNOPSIS
Installs the restic-manager agent on Windows, enrols this machine with a
one-time token (or a reusable enrolment key) and installs and starts the
agent's Windows service.

.DESCRIPTION
The console's enrolment dialog shows the line to paste into Windows
PowerShell 5.1 (built into Windows) started as administrator, for example:

  [Net.ServicePointManager]::SecurityProtocol = 'Tls12'; [Net.ServicePointManager]::ServerCertificateValidationCallback = { param($request, $cert, $chain, $policyErrors) $root = $chain.ChainElements[$chain.ChainElements.Count - 1].Certificate; (([int]$policyErrors -band 3) -eq 0) -and -not ($chain.ChainStatus | Where-Object { @('NoError', 'UntrustedRoot', 'RevocationStatusUnknown', 'OfflineRevocation') -notcontains $_.Status }) -and ([BitConverter]::ToString([Security.Cryptography.SHA256]::Create().ComputeHash($root.RawData)).Replace('-', '') -eq '3f9a...') }; & ([scriptblock]::Create((New-Object Net.WebClient).DownloadString('https://console:8080/install.ps1'))) -Server https://console:8080 -Token rme_... -CaFingerprint 3f9a...

The console's CA is private, so Windows does not know it: the callback on
that line pins it for fetching this script. It accepts the server only if
its certificate matches the name, its chain verifies (an unknown root and
unknown revocation aside) and the chain's root has the CA's SHA-256
fingerprint. This script then does the same in C# before it downloads
anything else (Use-PinnedCA), and the agent pins the CA for good at
enrolment. With a certificate from a public CA the line sets no callback
and Windows' own trust decides.

Steps: download SERVER/downloads/restic-manager-agent-windows-ARCH, check
that it runs, install it as INSTALLDIR\restic-manager-agent.exe, restrict
%ProgramData%\restic-manager to SYSTEM and Administrators, enrol (config:
%ProgramData%\restic-manager\agent.yaml, state directory beside it), then
"restic-manager-agent service install" and "service start". Run it again
without -Token or -Key to upgrade the agent of an enrolled machine.

.PARAMETER Server
The console's URL, e.g. https://console:8080.

.PARAMETER Token
The one-time enrolment token (default: $env:RM_ENROLL_TOKEN). Leave it out
to upgrade an enrolled machine.

.PARAMETER Key
A reusable enrolment key, instead of a token (default: $env:RM_ENROLL_KEY):
the console makes a new host for this machine, with the key's labels.

.PARAMETER Name
With -Key: the host's name (default: the computer's name).

.PARAMETER Labels
With -Key: this host's own labels, k=v,k2=v2 (if the key allows them; the
key's labels win on a conflict).

.PARAMETER CaFingerprint
SHA-256 fingerprint of the console's CA, as the console shows it.

.PARAMETER InstallDir
Where the agent binary goes (default: $env:ProgramFiles\restic-manager).

.PARAMETER Restic
Full path of restic.exe. Default: restic as this user finds it on PATH. The
service runs as LocalSystem, which does not see per-user PATH entries
(winget, scoop), so the full path found here is written into the config.

.PARAMETER Binary
Install this agent binary instead of downloading one.

.PARAMETER NoService
Do not install or start the Windows service.
#>
[CmdletBinding()]
param(
    [string]$Server,
    [string]$Token,
    [string]$Key,
    [string]$Name,
    # An array too: unquoted, -Labels role=web,env=prod reaches the script
    # as two strings.
    [string[]]$Labels,
    [string]$CaFingerprint,
    [string]$InstallDir = (Join-Path $env:ProgramFiles 'restic-manager'),
    [string]$Restic,
    [string]$Binary,
    [switch]$NoService
)

Set-StrictMode -Version 3.0
$ErrorActionPreference = 'Stop'
$ProgressPreference = 'SilentlyContinue'

$ServiceName = 'restic-manager-agent'

function Write-Step([string]$Message) { Write-Host "install.ps1: $Message" }

# Errors are thrown, not "exit": pasted into an interactive window, exit
# would close it and take the message along.
function Stop-Install([string]$Message) { throw "install.ps1: $Message" }

# Invoke-Native runs a program and fails on a non-zero exit status, which
# PowerShell does not do by itself.
function Invoke-Native([string]$What, [string]$Exe, [string[]]$Arguments) {
    # Local to this function: with output redirected, Windows PowerShell
    # turns each stderr line of a native program into an error record,
    # which 'Stop' would throw; the exit status decides instead.
    $ErrorActionPreference = 'Continue'
    & $Exe @Arguments
    if ($LASTEXITCODE -ne 0) { Stop-Install "$What failed (exit status $LASTEXITCODE)" }
}

# Use-PinnedCA makes the console's CA, identified by its SHA-256 fingerprint,
# the only one trusted for this session's downloads: the server's chain must
# end in it, and the server's name must match its certificate.
function Use-PinnedCA([string]$Fingerprint) {
    if (-not ('ResticManagerInstall.Pin' -as [type])) {
        Add-Type -TypeDefinition @'
using System;
using System.Net;
using System.Net.Security;
using System.Security.Cryptography;
using System.Security.Cryptography.X509Certificates;

namespace ResticManagerInstall {
    public static class Pin {
        static string fingerprint;

        public static void Install(string fp) {
            fingerprint = fp;
            ServicePointManager.ServerCertificateValidationCallback = Check;
        }

        static bool Check(object sender, X509Certificate cert, X509Chain chain, SslPolicyErrors errors) {
            if (cert == null || chain == null || chain.ChainElements.Count == 0) return false;
            if ((errors & (SslPolicyErrors.RemoteCertificateNameMismatch | SslPolicyErrors.RemoteCertificateNotAvailable)) != 0) return false;
            foreach (X509ChainStatus st in chain.ChainStatus) {
                // An unknown root is expected (that is why it is pinned); no
                // revocation lists exist for the console's private CA.
                if (st.Status != X509ChainStatusFlags.NoError &&
                    st.Status != X509ChainStatusFlags.UntrustedRoot &&
                    st.Status != X509ChainStatusFlags.RevocationStatusUnknown &&
                    st.Status != X509ChainStatusFlags.OfflineRevocation) return false;
            }
            X509Certificate2 root = chain.ChainElements[chain.ChainElements.Count - 1].Certificate;
            using (SHA256 sha = SHA256.Create()) {
                string got = BitConverter.ToString(sha.ComputeHash(root.RawData)).Replace("-", "").ToLowerInvariant();
                return got == fingerprint;
            }
        }
    }
}
'@
    }
    [ResticManagerInstall.Pin]::Install($Fingerprint)
}

function Test-Administrator {
    $id = [Security.Principal.WindowsIdentity]::GetCurrent()
    return ([Security.Principal.WindowsPrincipal]$id).IsInRole([Security.Principal.WindowsBuiltInRole]::Administrator)
}

# ---- checks before anything changes

if (-not (Test-Administrator)) {
    Stop-Install 'run this from an elevated PowerShell (Run as administrator)'
}
$arch = if ($env:PROCESSOR_ARCHITEW6432) { $env:PROCESSOR_ARCHITEW6432 } else { $env:PROCESSOR_ARCHITECTURE }
switch ($arch) {
    'AMD64' { $arch = 'amd64' }
    'ARM64' { $arch = 'arm64' }
    default { Stop-Install "no agent build for this architecture ($arch); builds exist for amd64 and arm64" }
}
# The environment fills in only when neither is given, so that a variable
# left in the session never adds a second credential.
if (-not $Token -and -not $Key) {
    $Token = $env:RM_ENROLL_TOKEN
    $Key = $env:RM_ENROLL_KEY
}
if ($Token -and $Key) {
    Stop-Install 'give -Token or -Key, not both (a token enrols a host made in the console; a key makes a new one)'
}
$labelText = (@($Labels) | Where-Object { $_ }) -join ','
if (-not $Key -and ($Name -or $labelText)) {
    Stop-Install "-Name and -Labels go with -Key (a token's host is named and labelled in the console)"
}
$credential = "$Token$Key"
$Server = "$Server".TrimEnd('/')
$CaFingerprint = "$CaFingerprint".Replace(':', '').Trim().ToLowerInvariant()
if ($CaFingerprint -and $CaFingerprint -notmatch '^[0-9a-f]{64}$') {
    Stop-Install '-CaFingerprint must be the 64 hex digits (SHA-256) the console shows'
}
$confDir = Join-Path $env:ProgramData 'restic-manager'
$config = Join-Path $confDir 'agent.yaml'
$exe = Join-Path $InstallDir 'restic-manager-agent.exe'

if ((Test-Path -LiteralPath $config) -and $credential) {
    Stop-Install "$config exists: this machine is already enrolled. To upgrade its agent, run again without -Token or -Key; to enrol it anew, uninstall the service and remove $confDir first."
}
if (-not (Test-Path -LiteralPath $config) -and -not $credential) {
    Stop-Install '-Token is required to enrol this machine, or -Key (the console shows them with the install line)'
}
if (-not $Server -and (-not $Binary -or $credential)) { Stop-Install '-Server URL is required' }
if ($Server -and $Server -notmatch '^https?://') { Stop-Install "-Server must be an http:// or https:// URL, not $Server" }
if ($Server -like 'http://*') {
    Write-Warning "$Server is plain HTTP: the agent and its credential travel unencrypted (use this on a trusted network only)"
}

# ---- TLS: only the pinned CA, or Windows' own trust

[Net.ServicePointManager]::SecurityProtocol = [Net.ServicePointManager]::SecurityProtocol -bor [Net.SecurityProtocolType]::Tls12
if ($CaFingerprint) {
    Use-PinnedCA $CaFingerprint
} else {
    # Windows' own trust, whatever callback an earlier line left behind.
    [Net.ServicePointManager]::ServerCertificateValidationCallback = $null
}

$tmp = Join-Path ([IO.Path]::GetTempPath()) ('restic-manager-install-' + [guid]::NewGuid().ToString('N'))
New-Item -ItemType Directory -Path $tmp | Out-Null
try {
    # ---- get the agent and check that it runs here

    $newExe = Join-Path $tmp 'restic-manager-agent.exe'
    if ($Binary) {
        if (-not (Test-Path -LiteralPath $Binary -PathType Leaf)) { Stop-Install "-Binary ${Binary}: no such file" }
        Copy-Item -LiteralPath $Binary -Destination $newExe
    } else {
        $url = "$Server/downloads/restic-manager-agent-windows-$arch"
        Write-Step "downloading $url"
        try {
            (New-Object Net.WebClient).DownloadFile($url, $newExe)
        } catch {
            Stop-Install "could not download ${url}: $($_.Exception.Message)"
        }
    }
    # Windows PowerShell turns a native program's stderr into errors, which
    # 'Stop' would throw before the message could be shown.
    $ErrorActionPreference = 'Continue'
    $version = (& $newExe version 2>&1 | Out-String).Trim()
    $status = $LASTEXITCODE
    $ErrorActionPreference = 'Stop'
    if ($status -ne 0 -or $version -notlike 'restic-manager-agent *') {
        Stop-Install "the downloaded file is not a working restic-manager agent (it says: $version)"
    }
    Write-Step "got $version"

    # ---- install it (a running service holds its .exe open: stop it first)

    $stoppedForUpgrade = $false
    $svc = Get-Service -Name $ServiceName -ErrorAction SilentlyContinue
    if ($svc -and $svc.Status -ne 'Stopped') {
        Write-Step "stopping the running service to replace its binary"
        Stop-Service -Name $ServiceName
        $svc.WaitForStatus('Stopped', [TimeSpan]::FromSeconds(90))
        $stoppedForUpgrade = $true
    }
    New-Item -ItemType Directory -Force -Path $InstallDir | Out-Null
    Copy-Item -LiteralPath $newExe -Destination $exe -Force
    Write-Step "installed $exe"

    # ---- restic

    if ($Restic) {
        if (-not (Test-Path -LiteralPath $Restic -PathType Leaf)) { Write-Warning "-Restic ${Restic}: no such file; jobs fail until it exists" }
    } else {
        $found = Get-Command restic -CommandType Application -ErrorAction SilentlyContinue | Select-Object -First 1
        if ($found) {
            $Restic = $found.Source
            Write-Step "using restic at $Restic"
        } else {
            Write-Warning 'restic was not found: install restic 0.14 or newer (e.g. winget install restic.restic) and set its full path as "restic:" in the config, or rerun with -Restic'
        }
    }

    # ---- enrol, with the config directory closed to other users first

    if (Test-Path -LiteralPath $config) {
        Write-Step "keeping the existing enrolment in $config"
    } else {
        New-Item -ItemType Directory -Force -Path $confDir | Out-Null
        # SYSTEM (S-1-5-18) and Administrators (S-1-5-32-544) only, by SID
        # so that it works in every language; no inherited "Users: read".
        & icacls.exe $confDir /inheritance:r /grant:r '*S-1-5-18:(OI)(CI)F' '*S-1-5-32-544:(OI)(CI)F' | Out-Null
        if ($LASTEXITCODE -ne 0) { Stop-Install "icacls could not restrict $confDir (exit status $LASTEXITCODE)" }

        $enrollArgs = @('enroll', '--server', $Server, '--config', $config)
        if ($CaFingerprint) { $enrollArgs += @('--ca-fingerprint', $CaFingerprint) }
        if ($Restic) { $enrollArgs += @('--restic', $Restic) }
        if ($Name) { $enrollArgs += @('--name', $Name) }
        if ($labelText) { $enrollArgs += @('--labels', $labelText) }
        # The token or key goes through the environment, not the command
        # line; only the one given is set.
        Remove-Item Env:RM_ENROLL_TOKEN, Env:RM_ENROLL_KEY -ErrorAction SilentlyContinue
        if ($Key) {
            $env:RM_ENROLL_KEY = $Key
            $why = 'enrolment (an enrolment key works until it expires or is used up, and is refused once deleted: check it in the console''s settings)'
        } else {
            $env:RM_ENROLL_TOKEN = $Token
            $why = 'enrolment (a token works once and for 24 hours: make a new one in the console if needed)'
        }
        try {
            Invoke-Native $why $exe $enrollArgs
        } finally {
            Remove-Item Env:RM_ENROLL_TOKEN, Env:RM_ENROLL_KEY -ErrorAction SilentlyContinue
        }
    }

    # ---- the service

    if ($NoService) {
        if ($stoppedForUpgrade) {
            Start-Service -Name $ServiceName
            Write-Step 'started the existing service again, with the new agent'
        } else {
            Write-Step "not installing the service (-NoService); run: & '$exe' run --config '$config'"
        }
    } else {
        if (-not (Get-Service -Name $ServiceName -ErrorAction SilentlyContinue)) {
            Invoke-Native 'service install' $exe @('service', 'install', '--config', $config)
        }
        Invoke-Native 'service start' $exe @('service', 'start', '--config', $config)
        Start-Sleep -Seconds 3
        $svc = Get-Service -Name $ServiceName
        if ($svc.Status -eq 'Running') {
            Write-Step 'the service is running'
        } else {
            Write-Warning "the service is $($svc.Status); see the Application event log (source $ServiceName) and $confDir\state\agent.log"
        }
    }

    $hostLine = Select-String -LiteralPath $config -Pattern '^host_id:\s*(\S+)' -ErrorAction SilentlyContinue | Select-Object -First 1
    $hostId = if ($hostLine) { $hostLine.Matches[0].Groups[1].Value } else { '?' }
    Write-Step "done: this machine is host $hostId of $Server"
} finally {
    Remove-Item -LiteralPath $tmp -Recurse -Force -ErrorAction SilentlyContinue
}
