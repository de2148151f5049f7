#!/usr/bin/env bash
# System tools the test suite runs for real, installed from Debian/Ubuntu packages:
#   promtool   (package `prometheus`): `promtool check rules` and `promtool test rules` on the
#              rule groups and unit tests that the monitoring backend generates.
# Idempotent: a tool already on PATH is not installed again, so running this on a developer's
# machine or on every CI job costs nothing after the first time. Works as root (CI containers,
# which often have no sudo) and as a normal user with sudo (CI runners, laptops).
set -euo pipefail

packages=()
command -v promtool >/dev/null 2>&1 || packages+=(prometheus)

if [ "${#packages[@]}" -eq 0 ]; then
  echo "install-system-deps: everything is already installed"
  exit 0
fi

if ! command -v apt-get >/dev/null 2>&1; then
  echo "install-system-deps: no apt-get here; install these by hand: ${packages[*]}" >&2
  exit 1
fi
if [ "$(id -u)" -eq 0 ]; then
  as_root=()
elif command -v sudo >/dev/null 2>&1; then
  as_root=(sudo)
else
  echo "install-system-deps: need root or sudo to install: ${packages[*]}" >&2
  exit 1
fi

# Non-interactive, so that no package stops to ask a question in CI; passed through `env`
# because sudo drops the caller's environment. Only the promtool binary is used; the
# Prometheus service that the package also ships is never needed.
${as_root[@]+"${as_root[@]}"} env DEBIAN_FRONTEND=noninteractive apt-get update -q
${as_root[@]+"${as_root[@]}"} env DEBIAN_FRONTEND=noninteractive \
  apt-get install -q -y --no-install-recommends "${packages[@]}"

command -v promtool >/dev/null 2>&1 || {
  echo "install-system-deps: promtool is still not on PATH after installing prometheus" >&2
  exit 1
}
echo "install-system-deps: installed ${packages[*]} ($(promtool --version 2>&1 | head -n 1))"
