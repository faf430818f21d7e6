#!/usr/bin/env bash
# Install everything the test suite needs on a fresh machine, then run it.
# Usage (from the repository root): bash tests/run.sh [pytest args]
set -euo pipefail
cd "$(dirname "$0")/.."

python3 -m pip install --quiet --disable-pip-version-check -e '.[test]'

# The dashboard test drives Debian's Chromium (Playwright never downloads a browser here).
if ! command -v chromium >/dev/null 2>&1; then
  if [ "$(id -u)" = 0 ]; then
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null
  else
    sudo apt-get update -qq && DEBIAN_FRONTEND=noninteractive sudo apt-get install -y -qq chromium >/dev/null
  fi
fi

python3 -m ruff check common services tests
# No reruns: a test that fails is a failure. Whole-system tests (a real supervisord tree) carry
# the `whole_system` marker: `bash tests/run.sh -m whole_system` or `-m "not whole_system"`.
exec python3 -m pytest -q "$@"
