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
if ! /usr/bin/python3 -c "import gi; gi.require_version('Gtk', '3.0')" >/dev/null 2>&1; then missing="$missing python3-gi"; fi
if [ -n "$missing" ]; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    echo "== installing Inkscape and Xvfb for the end-to-end tests (missing:$missing)"
    apt-get update -q
    DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends \
      inkscape xvfb xauth xdotool imagemagick python3-lxml python3-numpy python3-cssselect python3-gi gir1.2-gtk-3.0
  else
    echo "== note: missing$missing; the Inkscape end-to-end tests will be skipped."
    echo "   Install them with: sudo apt-get install inkscape xvfb xauth xdotool imagemagick python3-lxml python3-numpy python3-cssselect python3-gi gir1.2-gtk-3.0"
  fi
fi

PY=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
  echo "== creating .venv with $($PY --version)"
  "$PY" -m venv .venv
fi
echo "== installing the engine and test requirements into .venv"
.venv/bin/python -m pip install -q --disable-pip-version-check -e '.[test]'

# The plugin runs under whichever inkex the user's Inkscape ships: 1.2 (above, Inkscape's own) and
# 1.4 (PyPI's, with its pure-Python requirements, in a folder of its own so nothing else sees it).
INKEX14=.inkex-1.4
if [ ! -d "$INKEX14/inkex" ]; then
  echo "== installing inkex 1.4 into $INKEX14 for the plugin tests"
  .venv/bin/python -m pip install -q --disable-pip-version-check --no-deps --target "$INKEX14" \
    'inkex==1.4.1' 'tinycss2>=1.0.1,<2' webencodings 'pyparsing>=3.0.9' || echo "   (not available: the inkex 1.4 run is skipped)"
fi

echo "== running the tests"
status=0
.venv/bin/python -m pytest "$@" || status=$?
if [ -d "$INKEX14/inkex" ]; then
  echo "== the plugin tests again under inkex 1.4"
  CLIPDRAW_TEST_INKEX="$PWD/$INKEX14" .venv/bin/python -m pytest tests/test_plugin.py tests/test_plugin_run.py "$@" || status=$?
fi
exit $status
