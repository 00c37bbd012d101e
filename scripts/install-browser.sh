#!/usr/bin/env bash
# Debian's chromium and chromedriver, which the browser tests need (report XSS, heatmap screenshot,
# annotation page). Called by `setup.sh --dev`. When they are missing and cannot be installed it says so and
# exits 1: a test run without them would skip those tests, and CI must not pass that way.
set -uo pipefail
have() { command -v "$1" >/dev/null 2>&1; }
ready() { { have chromium || have chromium-browser; } && have chromedriver; }
ready && exit 0

fail() {
  echo "setup: $1; the browser tests need chromium and chromedriver (Debian: apt-get install chromium" \
       "chromium-driver)" >&2
  exit 1
}
have apt-get || fail "chromium or chromedriver is missing and there is no apt-get to install them"
as_root=()
if [ "$(id -u)" != 0 ]; then
  have sudo || fail "installing chromium needs root (or sudo)"
  as_root=(sudo -n)
fi
log=$(mktemp)
if ! { "${as_root[@]}" apt-get update -qq &&
       "${as_root[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium chromium-driver
     } >"$log" 2>&1; then
  tail -n 5 "$log" >&2
  fail "apt-get could not install chromium and chromium-driver (its last lines are above)"
fi
ready || fail "chromium and chromium-driver were installed but chromium or chromedriver is not on PATH"
echo "setup: installed chromium and chromedriver"
