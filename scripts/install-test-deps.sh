#!/bin/sh
# scripts/install-test-deps.sh — system packages the test suite needs beyond the Python ones; idempotent.
#
# - chromium: the evaluation report test opens report.html in headless Chromium and checks its figures
#   render (tests/evaluate/test_report.py fails with a pointer here when it is missing); the board test
#   (tests/board/test_board_browser.py, issue 17) drives it through Playwright's executable_path.
# - fonts-wqy-zenhei: a CJK font, so the board's Chinese screens render as text in its screenshots.
# - golang-go (issue 18): Go's text/template renders the Ollama Modelfile TEMPLATE as Ollama does
#   (tests/export/test_export_gguf.py compares it with the R1 prompt).
#
# Installs with apt-get (Debian / Ubuntu) when a package is missing and we are root; otherwise says what is
# missing and exits non-zero, so a CI log shows the cause instead of a failing test.
set -eu

missing=""
[ -x /usr/bin/chromium ] || command -v chromium >/dev/null 2>&1 || missing="$missing chromium"
[ -d /usr/share/fonts/truetype/wqy ] || missing="$missing fonts-wqy-zenhei"
command -v go >/dev/null 2>&1 || missing="$missing golang-go"

if [ -z "$missing" ]; then
    exit 0
fi
if [ "$(id -u)" -ne 0 ] || ! command -v apt-get >/dev/null 2>&1; then
    echo "install-test-deps: missing:$missing (install with your package manager, e.g. sudo apt-get install$missing)" >&2
    exit 1
fi
echo "install-test-deps: installing$missing"
apt-get update -qq
DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $missing >/dev/null
