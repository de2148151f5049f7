#!/usr/bin/env bash
# System tools and servers the test suite runs for real, installed from Debian/Ubuntu packages.
# The tests start every server themselves, on 127.0.0.1 and on a free port, in a temporary
# folder; nothing here starts or enables a service.
#
#   command                   package                   used for
#   promtool, prometheus      prometheus                rule checks and unit tests; a real server
#                                                       scraping the serving runtime with the
#                                                       generated rules loaded
#   prometheus-pushgateway    prometheus-pushgateway    drift and batch-scoring metrics
#   prometheus-alertmanager   prometheus-alertmanager   the generated AlertmanagerConfig routes
#   redis-server              redis-server              Feast's online store
#   postgres, initdb          postgresql                an offline source and store
#   npm, node                 npm                       installs yaml-language-server (the
#                                                       editor schema test), scripts/install-test-tools.sh
#   zsh, fish                 zsh, fish                 sourcing `mlc completion zsh|fish`
#
# Idempotent: a tool already found is not installed again, so running this on a developer's
# machine or on every CI job costs nothing after the first time. Works as root (CI containers,
# which often have no sudo) and as a normal user with sudo (CI runners, laptops).
set -euo pipefail

# Debian installs PostgreSQL's server programs outside PATH, under a versioned folder.
find_pg() { ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1; }

packages=()
command -v promtool >/dev/null 2>&1 && command -v prometheus >/dev/null 2>&1 \
  || packages+=(prometheus)
command -v prometheus-pushgateway >/dev/null 2>&1 || packages+=(prometheus-pushgateway)
command -v prometheus-alertmanager >/dev/null 2>&1 || packages+=(prometheus-alertmanager)
command -v redis-server >/dev/null 2>&1 || packages+=(redis-server)
[ -n "$(find_pg)" ] && [ -x "$(find_pg)/initdb" ] || packages+=(postgresql)
command -v npm >/dev/null 2>&1 || packages+=(npm)
# the shells whose completion scripts the tests source (`mlc completion zsh|fish`)
command -v zsh >/dev/null 2>&1 || packages+=(zsh)
command -v fish >/dev/null 2>&1 || packages+=(fish)

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
run_root() { ${as_root[@]+"${as_root[@]}"} "$@"; }

# The packages ship services; the tests start their own servers, so keep the packages from
# starting theirs (policy-rc.d exit 101: "action forbidden"), then restore what was there.
policy=/usr/sbin/policy-rc.d
added_policy=0
if [ ! -e "$policy" ]; then
  printf '#!/bin/sh\nexit 101\n' | run_root tee "$policy" >/dev/null
  run_root chmod 755 "$policy"
  added_policy=1
fi
cleanup() { [ "$added_policy" -eq 1 ] && run_root rm -f "$policy"; return 0; }
trap cleanup EXIT

# Non-interactive, so that no package stops to ask a question in CI; passed through `env`
# because sudo drops the caller's environment.
run_root env DEBIAN_FRONTEND=noninteractive apt-get update -q
run_root env DEBIAN_FRONTEND=noninteractive \
  apt-get install -q -y --no-install-recommends "${packages[@]}"

missing=()
for tool in promtool prometheus prometheus-pushgateway prometheus-alertmanager redis-server; do
  command -v "$tool" >/dev/null 2>&1 || missing+=("$tool")
done
[ -n "$(find_pg)" ] || missing+=(initdb)
if [ "${#missing[@]}" -ne 0 ]; then
  echo "install-system-deps: still missing after the install: ${missing[*]}" >&2
  exit 1
fi
echo "install-system-deps: installed ${packages[*]} ($(promtool --version 2>&1 | head -n 1))"
