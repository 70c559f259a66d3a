#!/usr/bin/env bash
# What the tests need beyond Python packages: Debian's Chromium and redis-server (when missing and
# we are root) and Mozilla's ical.js from npm into the ignored .cache/node folder.
set -euo pipefail
cd "$(dirname "$0")/.."

if ! command -v chromium >/dev/null 2>&1 && [ ! -x /usr/bin/chromium ]; then
  if [ "$(id -u)" = "0" ] && command -v apt-get >/dev/null 2>&1; then
    echo "installing Debian's chromium for the browser tests"
    apt-get update -qq >/dev/null
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null
  else
    echo "chromium is missing and we are not root: browser tests will skip (fail under CI)" >&2
  fi
fi

if ! command -v redis-server >/dev/null 2>&1; then
  if [ "$(id -u)" = "0" ] && command -v apt-get >/dev/null 2>&1; then
    echo "installing Debian's redis-server for the shared rate-limit tests"
    apt-get update -qq >/dev/null
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq redis-server >/dev/null
  else
    echo "redis-server is missing and we are not root: shared-limit tests will skip (fail under CI)" >&2
  fi
fi

if command -v npm >/dev/null 2>&1; then
  if [ ! -f .cache/node/node_modules/ical.js/package.json ]; then
    echo "installing ical.js into .cache/node"
    mkdir -p .cache/node
    npm install --silent --no-audit --no-fund --prefix .cache/node ical.js@2 >/dev/null
  fi
else
  echo "npm is missing: ical.js cross-checks will skip (fail under CI)" >&2
fi
