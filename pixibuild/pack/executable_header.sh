#!/bin/sh
main() {
    # A pixi-pack environment that unpacks itself: made by pixibuild __PIXIBUILD_VERSION__ (`pixibuild pack
    # --create-executable`). Run it where the environment should go:
    #
    #     sh environment.sh [-o OUTPUT_DIR] [-e ENV_NAME] [-s SHELL] [-v | -q]
    #
    # Layout, as pixi-pack's: this header; environment.tar in base64; a line @@END_ARCHIVE@@; the unpacker in
    # base64; a last line with the byte counts and sha256s of both, checked before anything is written.
    # Needs: a POSIX sh, awk, sed, tail, wc, mktemp, base64 (coreutils, busybox or macOS) and __PIXIBUILD_NEEDS__.
    # Everything is inside main, which the shell parses whole before running any of it: a copy cut short
    # inside this header is a syntax error (or `mai: not found`), never half a run.
    set -eu
    unpacker_kind=__PIXIBUILD_UNPACKER__
    min_python=__PIXIBUILD_MIN_PYTHON__
    me=$0
    name=$(basename -- "$me")

    fail() {
        printf '%s: error: %s\n' "$name" "$*" >&2
        exit 1
    }

    for arg in "$@"; do
        case $arg in
        -h | --help)
            cat <<USAGE
Usage: $name [OPTIONS]

Unpacks the environment inside this file into OUTPUT_DIR/ENV_NAME and writes OUTPUT_DIR/activate.<ext>.

Options:
  -o, --output-directory <DIR>  Where to unpack the environment [default: .]
  -e, --env-name <NAME>         Name of the environment directory [default: env]
  -s, --shell <SHELL>           bash, zsh, fish, xonsh, powershell, cmd or nushell [default: bash]
  -v, --verbose                 Increase logging verbosity
  -q, --quiet                   Decrease logging verbosity
  -h, --help                    Print help

Needs __PIXIBUILD_NEEDS__.
USAGE
            exit 0
            ;;
        esac
    done

    # A copy cut short (an interrupted download) has no end line: refuse before writing anything.
    [ -r "$me" ] || fail "cannot read $me"
    trailer=$(tail -n 1 -- "$me")
    case $trailer in
    "@@END_UNPACKER@@ "*) ;;
    *) fail "$me is incomplete (a truncated download or copy?): its last line is not the end marker; get it again" ;;
    esac
    read -r _ archive_bytes archive_sha256 unpacker_bytes unpacker_sha256 <<TRAILER
$trailer
TRAILER

    if [ "$unpacker_kind" = python ]; then
        python=""
        for candidate in ${PIXIBUILD_PYTHON:-python3 python}; do
            if command -v "$candidate" >/dev/null 2>&1 &&
                "$candidate" -c "import sys; sys.exit(sys.version_info < tuple(map(int, '$min_python'.split('.'))))" 2>/dev/null; then
                python=$candidate
                break
            fi
        done
        [ -n "$python" ] || [ -z "${PIXIBUILD_PYTHON:-}" ] || fail "PIXIBUILD_PYTHON=$PIXIBUILD_PYTHON is not a python >= $min_python"
        [ -n "$python" ] || fail "needs python3 >= $min_python on PATH to run its unpacker (set PIXIBUILD_PYTHON to use another interpreter), or a copy made with --pixi-unpack-source"
    fi

    read -r header_end archive_end last <<LINES
$(awk '/^@@END_HEADER@@$/ { h = NR } /^@@END_ARCHIVE@@$/ { a = NR } END { print h + 0, a + 0, NR }' "$me")
LINES
    [ "$header_end" -gt 0 ] && [ "$archive_end" -gt "$header_end" ] || fail "$me is damaged: its @@END_HEADER@@/@@END_ARCHIVE@@ markers are missing"

    sha256_of() {
        if command -v sha256sum >/dev/null 2>&1; then
            sha256sum "$1" | awk '{ print $1 }'
        elif command -v shasum >/dev/null 2>&1; then
            shasum -a 256 "$1" | awk '{ print $1 }'
        elif [ -n "${python:-}" ]; then
            "$python" -c "import hashlib, sys; d = hashlib.sha256(); f = open(sys.argv[1], 'rb'); [d.update(b) for b in iter(lambda: f.read(1 << 20), b'')]; print(d.hexdigest())" "$1"
        fi
    }

    check() { # FILE BYTES SHA256 WHAT
        actual=$(wc -c <"$1" | tr -d ' ')
        [ "$actual" = "$2" ] || fail "$me is damaged: its $4 decodes to $actual bytes, expected $2; get it again"
        digest=$(sha256_of "$1")
        [ -z "$digest" ] || [ "$digest" = "$3" ] || fail "$me is damaged: the sha256 of its $4 is $digest, expected $3; get it again"
    }

    tmp=$(mktemp -d "${TMPDIR:-/tmp}/pixibuild-unpack.XXXXXX") || fail "cannot create a temporary directory"
    trap 'rm -rf "$tmp"' EXIT
    trap 'exit 130' INT
    trap 'exit 143' TERM HUP

    sed -n "$((header_end + 1)),$((archive_end - 1))p" "$me" | base64 -d >"$tmp/environment.tar" 2>/dev/null ||
        fail "$me is damaged: its archive is not valid base64; get it again"
    check "$tmp/environment.tar" "$archive_bytes" "$archive_sha256" archive
    sed -n "$((archive_end + 1)),$((last - 1))p" "$me" | base64 -d >"$tmp/unpacker" 2>/dev/null ||
        fail "$me is damaged: its unpacker is not valid base64; get it again"
    check "$tmp/unpacker" "$unpacker_bytes" "$unpacker_sha256" unpacker

    status=0
    if [ "$unpacker_kind" = python ]; then
        "$python" "$tmp/unpacker" "$@" "$tmp/environment.tar" || status=$?
    else
        chmod +x "$tmp/unpacker"
        "$tmp/unpacker" "$@" "$tmp/environment.tar" || status=$?
    fi
    exit "$status"
}

main "$@"
@@END_HEADER@@
