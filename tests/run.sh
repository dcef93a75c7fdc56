#!/usr/bin/env bash
# Install what the test suite needs, then run it: `bash tests/run.sh` from a clone.
#  - system packages for the end-to-end tests (real Inkscape headless under Xvfb), when root on Debian/Ubuntu
#  - a virtual environment .venv with the engine installed editable, plus pytest
# Extra arguments go to pytest (e.g. `bash tests/run.sh -k render`).
set -euo pipefail
cd "$(dirname "$0")/.."

missing=""
for cmd in inkscape Xvfb xvfb-run xdotool import; do
  command -v "$cmd" >/dev/null 2>&1 || missing="$missing $cmd"
done
if ! /usr/bin/python3 -c "import lxml, numpy, cssselect" >/dev/null 2>&1; then missing="$missing python3-lxml"; fi
if [ -n "$missing" ]; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    echo "== installing Inkscape and Xvfb for the end-to-end tests (missing:$missing)"
    apt-get update -q
    DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends \
      inkscape xvfb xauth xdotool imagemagick python3-lxml python3-numpy python3-cssselect
  else
    echo "== note: missing$missing; the Inkscape end-to-end tests will be skipped."
    echo "   Install them with: sudo apt-get install inkscape xvfb xauth xdotool imagemagick python3-lxml python3-numpy python3-cssselect"
  fi
fi

PY=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
  echo "== creating .venv with $($PY --version)"
  "$PY" -m venv .venv
fi
echo "== installing the engine and test requirements into .venv"
.venv/bin/python -m pip install -q --disable-pip-version-check -e '.[test]'

echo "== running the tests"
exec .venv/bin/python -m pytest "$@"
