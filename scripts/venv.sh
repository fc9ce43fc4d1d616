#!/usr/bin/env bash
# The project's Python virtualenv: target/venv (git-ignored), with the pinned tools of
# scripts/requirements.txt (k6, helm-python-sdk, kubernetes-validate). Created on the
# first run, recreated when the requirements change, reused otherwise. Nothing goes
# into the system interpreter (stock Debian refuses that: externally-managed-environment).
#
#   scripts/venv.sh            prints the venv's directory (its bin/ holds k6, python)
#   PYTHON=python3.12 ...      the interpreter that creates it
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
venv="$root/target/venv"
requirements="$root/scripts/requirements.txt"
python="${PYTHON:-python3}"

if ! command -v "$python" >/dev/null 2>&1; then
    echo "venv.sh: installing python3 and python3-venv (Debian packages)" >&2
    apt-get update -qq >&2 && apt-get install -y -qq --no-install-recommends python3 python3-venv >&2
fi
stamp="$venv/.requirements"
if [[ ! -x "$venv/bin/python" ]] || ! cmp -s "$requirements" "$stamp"; then
    rm -rf "$venv"
    mkdir -p "$(dirname "$venv")"
    if ! "$python" -m venv "$venv" >&2; then
        # Debian splits ensurepip out of python3 itself.
        echo "venv.sh: installing python3-venv (Debian package)" >&2
        apt-get update -qq >&2 && apt-get install -y -qq --no-install-recommends python3-venv >&2
        "$python" -m venv "$venv" >&2
    fi
    "$venv/bin/python" -m pip install --quiet --disable-pip-version-check -r "$requirements" >&2
    cp "$requirements" "$stamp"
    echo "venv.sh: installed $(grep -cv '^#' "$requirements") tools into $venv" >&2
fi
echo "$venv"
