# A pixi-pack environment that unpacks itself: made by pixibuild __PIXIBUILD_VERSION__ (`pixibuild pack
# --create-executable` for a Windows platform). Run it where the environment should go:
#
#     .\environment.ps1 [-o OUTPUT_DIR] [-e ENV_NAME] [-s SHELL] [-v | -q]
#
# Layout, as pixi-pack's: this header; environment.tar in base64; a line __END_ARCHIVE__; the unpacker in
# base64; a last line with the byte counts and sha256s of both, checked before anything is written.
# Needs: PowerShell and __PIXIBUILD_NEEDS__.
$ErrorActionPreference = "Stop"
$UnpackerKind = "__PIXIBUILD_UNPACKER__"
$MinPython = "__PIXIBUILD_MIN_PYTHON__"
$Me = $MyInvocation.MyCommand.Path
$Name = $MyInvocation.MyCommand.Name

function Fail([string] $Message) {
    [Console]::Error.WriteLine("${Name}: error: $Message")
    exit 1
}

foreach ($arg in $args) {
    if ($arg -eq "-h" -or $arg -eq "--help") {
        Write-Output @"
Usage: $Name [OPTIONS]

Unpacks the environment inside this file into OUTPUT_DIR\ENV_NAME and writes OUTPUT_DIR\activate.<ext>.

Options:
  -o, --output-directory <DIR>  Where to unpack the environment [default: .]
  -e, --env-name <NAME>         Name of the environment directory [default: env]
  -s, --shell <SHELL>           bash, zsh, fish, xonsh, powershell, cmd or nushell [default: bash]
  -v, --verbose                 Increase logging verbosity
  -q, --quiet                   Decrease logging verbosity
  -h, --help                    Print help

Needs __PIXIBUILD_NEEDS__.
"@
        exit 0
    }
}

$lines = [System.IO.File]::ReadAllLines($Me)
$trailer = $lines[$lines.Count - 1].Split(" ")
if ($trailer.Count -ne 5 -or $trailer[0] -ne "__END_UNPACKER__") {
    Fail "$Me is incomplete (a truncated download or copy?): its last line is not the end marker; get it again"
}
$headerEnd = [Array]::IndexOf($lines, "__END_HEADER__")
$archiveEnd = [Array]::IndexOf($lines, "__END_ARCHIVE__")
if ($headerEnd -lt 0 -or $archiveEnd -le $headerEnd) {
    Fail "$Me is damaged: its __END_HEADER__/__END_ARCHIVE__ markers are missing"
}

$python = $null
if ($UnpackerKind -eq "python") {
    $wanted = "import sys; sys.exit(sys.version_info < tuple(map(int, '$MinPython'.split('.'))))"
    $candidates = if ($env:PIXIBUILD_PYTHON) { @($env:PIXIBUILD_PYTHON) } else { @("python3", "python", "py") }
    foreach ($candidate in $candidates) {
        if (-not $candidate) { continue }
        if (-not (Get-Command $candidate -ErrorAction SilentlyContinue)) { continue }
        & $candidate -c $wanted 2>$null
        if ($LASTEXITCODE -eq 0) { $python = $candidate; break }
    }
    if (-not $python) {
        Fail "needs python3 >= $MinPython on PATH to run its unpacker (set PIXIBUILD_PYTHON to use another interpreter), or a copy made with --pixi-unpack-source"
    }
}

$parent = [System.IO.Path]::GetTempPath()
$tmp = Join-Path $parent ("pixibuild-unpack-" + [System.Guid]::NewGuid())
New-Item -ItemType Directory -Path $tmp | Out-Null
try {
    function Decode([int] $First, [int] $Last, [string] $Path, [string] $Bytes, [string] $Sha256, [string] $What) {
        try {
            $data = [System.Convert]::FromBase64String(($lines[$First..$Last] -join ""))
        } catch {
            Fail "$Me is damaged: its $What is not valid base64; get it again"
        }
        [System.IO.File]::WriteAllBytes($Path, $data)
        if ($data.Length -ne [long] $Bytes) {
            Fail "$Me is damaged: its $What decodes to $($data.Length) bytes, expected $Bytes; get it again"
        }
        $digest = (Get-FileHash -Algorithm SHA256 -Path $Path).Hash.ToLower()
        if ($digest -ne $Sha256) {
            Fail "$Me is damaged: the sha256 of its $What is $digest, expected $Sha256; get it again"
        }
    }
    $archive = Join-Path $tmp "environment.tar"
    Decode ($headerEnd + 1) ($archiveEnd - 1) $archive $trailer[1] $trailer[2] "archive"
    if ($UnpackerKind -eq "python") {
        $unpacker = Join-Path $tmp "unpacker.pyz"
        Decode ($archiveEnd + 1) ($lines.Count - 2) $unpacker $trailer[3] $trailer[4] "unpacker"
        & $python $unpacker @args $archive
    } else {
        $unpacker = Join-Path $tmp "pixi-unpack.exe"
        Decode ($archiveEnd + 1) ($lines.Count - 2) $unpacker $trailer[3] $trailer[4] "unpacker"
        & $unpacker @args $archive
    }
    $status = $LASTEXITCODE
} finally {
    Remove-Item -Path $tmp -Recurse -Force -ErrorAction SilentlyContinue
}
exit $status

__END_HEADER__
