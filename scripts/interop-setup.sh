#!/usr/bin/env bash
# Installs the foreign GlobalPlatform tool the interoperability tests drive (docs/interop.md):
# Py-GP 1.0.0 from PyPI, in its own virtual environment at target/interop-venv.
# Idempotent: does nothing when the venv already holds the pinned versions.
set -euo pipefail
cd "$(dirname "$0")/.."

# Versions verified with the suite. Py-GP 1.0.0 (2017) decorates classes with
# cryptography.utils.register_interface, which cryptography removed in 38.0.0: 37.0.4 is the
# newest release it imports with unchanged (an abi3 wheel, so any Python 3 from 3.6 installs it).
PYGP_VERSION="1.0.0"
CRYPTOGRAPHY_VERSION="37.0.4"

VENV="${INTEROP_VENV:-target/interop-venv}"
PY="$VENV/bin/python"
STAMP="$VENV/.postissue-interop"
WANT="Py-GP==$PYGP_VERSION cryptography==$CRYPTOGRAPHY_VERSION"

if [ -x "$PY" ] && [ -f "$STAMP" ] && [ "$(cat "$STAMP")" = "$WANT" ]; then
  exit 0
fi

echo "==> interop: creating $VENV with $WANT"
# Start clean, but only ever remove a virtual environment.
if [ -f "$VENV/pyvenv.cfg" ]; then rm -rf "$VENV"; fi
if ! command -v python3 >/dev/null 2>&1 || ! python3 -m venv "$VENV" >/dev/null 2>&1; then
  # Debian splits venv (and pip) out of python3.
  if [ -f "$VENV/pyvenv.cfg" ]; then rm -rf "$VENV"; fi
  sudo=""
  [ "$(id -u)" -eq 0 ] || sudo="sudo"
  $sudo apt-get update
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y --no-install-recommends python3 python3-venv
  python3 -m venv "$VENV"
fi
"$PY" -m pip install --quiet --disable-pip-version-check --only-binary cryptography \
  "Py-GP==$PYGP_VERSION" "cryptography==$CRYPTOGRAPHY_VERSION"
"$PY" -c "import importlib.metadata as m; print('==> interop: Py-GP', m.version('Py-GP'), 'cryptography', m.version('cryptography'))"
echo "$WANT" > "$STAMP"
