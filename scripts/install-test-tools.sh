#!/usr/bin/env bash
# What the tests need beyond Python packages: Debian's Chromium, poppler-utils (pdftotext, to
# read printed pages back) and redis-server (when missing and we are root), and from npm into the
# ignored .cache/node folder Mozilla's ical.js and Deque's axe-core (accessibility checks).
set -euo pipefail
cd "$(dirname "$0")/.."

missing=()
if ! command -v chromium >/dev/null 2>&1 && [ ! -x /usr/bin/chromium ]; then missing+=(chromium); fi
if ! command -v pdftotext >/dev/null 2>&1; then missing+=(poppler-utils); fi
if [ "${#missing[@]}" -gt 0 ]; then
  if [ "$(id -u)" = "0" ] && command -v apt-get >/dev/null 2>&1; then
    echo "installing Debian's ${missing[*]} for the browser tests"
    apt-get update -qq >/dev/null
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
  else
    echo "${missing[*]} missing and we are not root: browser tests will skip (fail under CI)" >&2
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
  if [ ! -f .cache/node/node_modules/axe-core/axe.min.js ]; then
    echo "installing axe-core into .cache/node"
    mkdir -p .cache/node
    npm install --silent --no-audit --no-fund --prefix .cache/node axe-core@4 >/dev/null
  fi
else
  echo "npm is missing: ical.js and axe-core checks will skip (fail under CI)" >&2
fi
