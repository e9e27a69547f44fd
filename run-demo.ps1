# sharelab: one command to set up and run the offline Delta Sharing teaching lab (PowerShell twin of run-demo.sh).
# Usage: ./run-demo.ps1 [open|batch|test|stop|status|reset NAME|--help] [options]
# Works with Windows PowerShell 5.1 and PowerShell 7 on Windows, macOS and Linux.
$ErrorActionPreference = 'Stop'
Set-StrictMode -Version Latest

$Root = Split-Path -Parent $MyInvocation.MyCommand.Path
$Venv = Join-Path $Root '.venv'
$OnWindows = ($env:OS -eq 'Windows_NT')
if ($OnWindows) { $Py = Join-Path $Venv 'Scripts\python.exe' } else { $Py = Join-Path $Venv 'bin/python' }
if (-not $env:SHARELAB_HOME) { $env:SHARELAB_HOME = Join-Path $Root 'lab-home' }

function Show-Usage {
    @'
sharelab: an offline Delta Sharing teaching lab.

Usage: ./run-demo.ps1 [COMMAND] [OPTIONS]

Commands:
  (none) | open   Set up what is missing and open the lab: in the Docker image when a
                  Docker or podman engine is available (--local forces the virtual
                  environment), otherwise in .venv/. Starts the provider server and
                  JupyterLab on 127.0.0.1 with token auth and prints the URL.
                  --lan: workshop mode (instructor only): the provider listens on every
                  interface over HTTPS (a lab CA made once per lab home; its SHA-256
                  fingerprint is printed for attendees to check; SHARELAB_TLS=0 for plain
                  HTTP); JupyterLab stays on 127.0.0.1.
  batch           Execute every notebook and lab solution in order with papermill and
                  write the executed notebooks plus summary.html to runs/<timestamp>/.
                  Options are passed on: -p NAME VALUE (e.g. -p scale medium -p seed 7),
                  -f params.yaml, --only PATTERN, --out DIR.
  test            Create .venv/ if missing and run the whole test suite (pytest args
                  may follow, e.g. ./run-demo.ps1 test -k catalog).
  stop            Stop the provider server and JupyterLab (or the containers).
  status          Show what is running: the lab's containers and the local processes.
  reset NAME      Restore your copy of a notebook or lab exercise as shipped, e.g.
                  ./run-demo.ps1 reset lab1 (or 03). You work on copies in ./work/
                  (SHARELAB_WORK), made on the first start; the originals are never edited.
                  When the container lab runs, the copy in its work volume is restored.
  --help          This text.

Environment: SHARELAB_HOME (default: ./lab-home) holds the catalog, the Delta tables,
the server's pid/log files and the recipients' profiles.
'@
}

# Run a native command; stop with its exit code when it fails (PowerShell does not by itself).
function Invoke-Checked {
    param([string]$Exe, [string[]]$Arguments)
    & $Exe @Arguments
    if ($LASTEXITCODE -ne 0) { exit $LASTEXITCODE }
}

# The same stamp as run-demo.sh: SHA-256 of pyproject.toml followed by constraints.txt.
function Get-DepsStamp {
    $bytes = [System.IO.File]::ReadAllBytes((Join-Path $Root 'pyproject.toml')) +
             [System.IO.File]::ReadAllBytes((Join-Path $Root 'constraints.txt'))
    $sha = [System.Security.Cryptography.SHA256]::Create()
    try { $hash = $sha.ComputeHash([byte[]]$bytes) } finally { $sha.Dispose() }
    return (($hash | ForEach-Object { $_.ToString('x2') }) -join '')
}

function Find-BasePython {
    $candidates = @()
    if ($env:PYTHON) { $candidates += ,@($env:PYTHON) }
    if ($OnWindows) { $candidates += ,@('py', '-3.11'); $candidates += ,@('py', '-3') }
    $candidates += ,@('python3'); $candidates += ,@('python')
    foreach ($c in $candidates) {
        $exe = $c[0]; $pre = @($c | Select-Object -Skip 1)
        if (-not (Get-Command $exe -ErrorAction SilentlyContinue)) { continue }
        & $exe @pre -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else 1)' 2>$null
        if ($LASTEXITCODE -eq 0) { return ,$c }
    }
    return $null
}

# Create or refresh .venv/ when pyproject.toml or constraints.txt changed.
function Initialize-Venv {
    $stampFile = Join-Path $Venv '.sharelab-stamp'
    $want = Get-DepsStamp
    if ((Test-Path $Py) -and (Test-Path $stampFile) -and ((Get-Content $stampFile -Raw).Trim() -eq $want)) { return }
    $base = Find-BasePython
    if (-not $base) {
        Write-Error 'Python >= 3.11 is needed; install it or set $env:PYTHON to a python 3.11+ executable'
        exit 1
    }
    if (-not (Test-Path $Py)) {
        Write-Host "==> creating $Venv"
        $exe = $base[0]; $pre = @($base | Select-Object -Skip 1)
        Invoke-Checked $exe (@($pre) + @('-m', 'venv', $Venv))
    }
    Write-Host '==> installing sharelab and its pinned dependencies into .venv/ (first run takes a few minutes)'
    Invoke-Checked $Py @('-m', 'pip', 'install', '--quiet', '--upgrade', 'pip')
    Invoke-Checked $Py @('-m', 'pip', 'install', '--quiet', '-c', (Join-Path $Root 'constraints.txt'), '-e', "$Root[test]")
    & $Py -m ipykernel install --sys-prefix --name python3 *> $null
    Set-Content -Path $stampFile -Value $want -NoNewline
}

function Get-Engine {
    foreach ($e in @('docker', 'podman')) {
        if (Get-Command $e -ErrorAction SilentlyContinue) {
            & $e info *> $null
            if ($LASTEXITCODE -eq 0) { return $e }
        }
    }
    return ''
}

# docker/lab.sh drives the containers; it needs a bash (Git Bash or WSL on Windows).
function Invoke-DockerLab {
    param([string]$Action, [string]$Engine, [switch]$Lan)
    $labSh = Join-Path $Root 'docker/lab.sh'
    if (-not (Test-Path $labSh) -or -not (Get-Command bash -ErrorAction SilentlyContinue)) { return $false }
    if ($Lan) { $env:LAN = '1' } else { $env:LAN = '0' }
    & bash $labSh $Action $Engine | Out-Host  # show its output; the function returns only the flag
    if ($LASTEXITCODE -ne 0) { exit $LASTEXITCODE }
    return $true
}

# docker/lab.sh ACTION ENGINE ARGS... when bash is at hand; returns its exit code (-1: no bash).
function Invoke-LabSh {
    param([string]$Engine, [string[]]$Arguments)
    $labSh = Join-Path $Root 'docker/lab.sh'
    if (-not (Test-Path $labSh) -or -not (Get-Command bash -ErrorAction SilentlyContinue)) { return -1 }
    & bash $labSh @Arguments $Engine | Out-Host
    return $LASTEXITCODE
}

# Workshop mode (--lan): only the provider listens on every interface, over HTTPS with the lab
# home's CA (SHARELAB_TLS=0: plain HTTP); the instructor's JupyterLab stays on 127.0.0.1.
function Open-Local {
    param([switch]$Lan)
    Initialize-Venv
    $startArgs = @('-m', 'helpers', 'start', '--host', '127.0.0.1')
    if ($Lan) {
        $startArgs = @('-m', 'helpers', 'start', '--host', '0.0.0.0')
        $scheme = 'https'
        if ($env:SHARELAB_TLS -eq '0') { $scheme = 'http' } else { $startArgs += '--tls' }
        $port = if ($env:SHARELAB_PORT) { $env:SHARELAB_PORT } else { '8080' }
        $ip = ''
        try {
            $ip = [System.Net.Dns]::GetHostAddresses([System.Net.Dns]::GetHostName()) |
                Where-Object { $_.AddressFamily -eq 'InterNetwork' -and -not [System.Net.IPAddress]::IsLoopback($_) } |
                Select-Object -First 1 | ForEach-Object { $_.ToString() }
        } catch { $ip = '' }
        if ($ip) { $startArgs += @('--public-url', "${scheme}://${ip}:$port") }
    }
    if ($env:SHARELAB_PORT) { $startArgs += @('--port', $env:SHARELAB_PORT) }
    Invoke-Checked $Py $startArgs
    $jupyterArgs = @('-m', 'helpers', 'jupyter', 'start', '--host', '127.0.0.1')
    if ($env:JUPYTER_PORT) { $jupyterArgs += @('--port', $env:JUPYTER_PORT) }
    Invoke-Checked $Py $jupyterArgs
}

$cmd = 'open'
$rest = @()
if ($args.Count -gt 0) { $cmd = [string]$args[0]; $rest = @($args | Select-Object -Skip 1) }

switch -Exact ($cmd) {
    { $_ -in @('-h', '--help', 'help', '-?') } { Show-Usage; break }
    'open' {
        $local = $rest -contains '--local'
        $lan = $rest -contains '--lan'
        $eng = Get-Engine
        if (-not $local -and $eng) {
            if (Invoke-DockerLab -Action 'up' -Engine $eng -Lan:$lan) { break }
        }
        Open-Local -Lan:$lan
        break
    }
    'batch' {
        Initialize-Venv
        & $Py -m helpers batch @rest
        exit $LASTEXITCODE
    }
    'test' {
        Initialize-Venv
        Set-Location $Root
        # The suite gives each test its own lab home; keep the user's lab out of it.
        Remove-Item Env:SHARELAB_HOME -ErrorAction SilentlyContinue
        & $Py -m pytest @rest
        exit $LASTEXITCODE
    }
    'stop' {
        $eng = Get-Engine
        if ($eng) { try { [void](Invoke-DockerLab -Action 'down' -Engine $eng) } catch { } }
        if (Test-Path $Py) {
            & $Py -m helpers jupyter stop
            & $Py -m helpers stop
        }
        exit 0
    }
    'status' {
        $eng = Get-Engine
        if ($eng) {
            Write-Host "Containers (${eng}):"
            [void](Invoke-LabSh -Engine $eng -Arguments @('status'))
        }
        Initialize-Venv
        Write-Host 'Local processes:'
        & $Py -m helpers status
        & $Py -m helpers jupyter status
        exit 0
    }
    'reset' {
        if ($rest.Count -lt 1) {
            [Console]::Error.WriteLine('error: name the copy to restore, e.g. ./run-demo.ps1 reset lab1')
            exit 2
        }
        # the container route: the copies are in the lab container's work volume
        $eng = Get-Engine
        if ($eng -and ((Invoke-LabSh -Engine $eng -Arguments @('running')) -eq 0)) {
            exit (Invoke-LabSh -Engine $eng -Arguments (@('reset') + $rest))
        }
        Initialize-Venv
        & $Py -m helpers jupyter reset @rest
        exit $LASTEXITCODE
    }
    default {
        [Console]::Error.WriteLine("error: unknown command '$cmd'")
        Show-Usage | Out-String | ForEach-Object { [Console]::Error.Write($_) }
        exit 2
    }
}
