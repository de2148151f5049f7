"""A minimal LSP client for yaml-language-server, over stdio JSON-RPC, for the editor tests.

It opens documents the way an editor does and collects what the server publishes; it
answers the few requests the server sends back (its settings, capability registration).
scripts/install-test-tools.sh installs the server into .tools/.
"""

from __future__ import annotations

import json
import queue
import shutil
import subprocess
import threading
import time
from pathlib import Path
from typing import Any

from .conftest import ROOT

SERVER = ROOT / ".tools" / "node_modules" / "yaml-language-server" / "bin" / \
    "yaml-language-server"

# No SchemaStore: the tests run without a network, and only the project's schemas apply.
SETTINGS = {"yaml": {"validate": True, "hover": True, "completion": True, "format": {},
                     "schemas": {}, "yamlVersion": "1.2", "schemaStore": {"enable": False}}}


def missing_reason() -> str | None:
    if shutil.which("node") is None:
        return "node is not installed (the yaml-language-server tests need it)"
    if not SERVER.is_file():
        return "yaml-language-server is not installed: run scripts/install-test-tools.sh"
    return None


class YamlLanguageServer:
    def __init__(self, root: Path):
        self.proc = subprocess.Popen(["node", str(SERVER), "--stdio"], stdin=subprocess.PIPE,
                                     stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
                                     cwd=root)
        self.messages: queue.Queue[dict] = queue.Queue()
        self.diagnostics: dict[str, list[dict]] = {}
        self.published: dict[str, int] = {}
        self._next_id = 0
        threading.Thread(target=self._read, daemon=True).start()
        self.request("initialize", {
            "processId": None, "rootUri": root.as_uri(),
            "capabilities": {"workspace": {"configuration": True},
                             "textDocument": {"publishDiagnostics": {}}},
            "workspaceFolders": [{"uri": root.as_uri(), "name": "project"}]})
        self.notify("initialized", {})
        self.notify("workspace/didChangeConfiguration", {"settings": SETTINGS})

    # --- JSON-RPC framing

    def _send(self, message: dict) -> None:
        body = json.dumps({"jsonrpc": "2.0", **message}).encode()
        self.proc.stdin.write(b"Content-Length: %d\r\n\r\n" % len(body) + body)
        self.proc.stdin.flush()

    def _read(self) -> None:
        stream = self.proc.stdout
        while True:
            headers = {}
            while (line := stream.readline()) not in (b"\r\n", b""):
                name, _, value = line.decode().partition(":")
                headers[name.strip().lower()] = value.strip()
            if not headers:
                return
            self.messages.put(json.loads(stream.read(int(headers["content-length"]))))

    def notify(self, method: str, params: Any) -> None:
        self._send({"method": method, "params": params})

    def request(self, method: str, params: Any, timeout: float = 30) -> Any:
        self._next_id += 1
        ident = self._next_id
        self._send({"id": ident, "method": method, "params": params})
        deadline = time.monotonic() + timeout
        while True:
            message = self._take(deadline - time.monotonic())
            if message.get("id") == ident and "method" not in message:
                if "error" in message:
                    raise RuntimeError(message["error"])
                return message.get("result")

    def _take(self, timeout: float) -> dict:
        message = self.messages.get(timeout=max(timeout, 0.01))
        method = message.get("method")
        if method == "textDocument/publishDiagnostics":
            uri = message["params"]["uri"]
            self.diagnostics[uri] = message["params"]["diagnostics"]
            self.published[uri] = self.published.get(uri, 0) + 1
        elif method == "workspace/configuration":  # one answer per item asked for
            items = message["params"]["items"]
            self._send({"id": message["id"],
                        "result": [SETTINGS.get(i.get("section"), None) for i in items]})
        elif "id" in message and method:  # registerCapability, workDoneProgress/create
            self._send({"id": message["id"], "result": None})
        return message

    # --- what the tests use

    def open(self, path: Path) -> str:
        uri = path.as_uri()
        self.notify("textDocument/didOpen", {"textDocument": {
            "uri": uri, "languageId": "yaml", "version": 1, "text": path.read_text()}})
        return uri

    def diagnostics_of(self, uris: list[str], timeout: float = 30) -> dict[str, list[dict]]:
        """The diagnostics of each document, once the server has validated all of them
        (a document's schema is loaded on first use; it publishes once the check ran)."""
        deadline = time.monotonic() + timeout
        while any(uri not in self.published for uri in uris):
            try:
                self._take(deadline - time.monotonic())
            except queue.Empty:
                missing = [u for u in uris if u not in self.published]
                raise TimeoutError(f"no diagnostics for {missing}") from None
        # the server may publish again once a schema has arrived: take what follows too
        while True:
            try:
                self._take(0.3)
            except queue.Empty:
                break
        return {uri: self.diagnostics[uri] for uri in uris}

    def hover(self, uri: str, line: int, character: int) -> str:
        result = self.request("textDocument/hover", {"textDocument": {"uri": uri},
                                                     "position": {"line": line,
                                                                  "character": character}})
        contents = (result or {}).get("contents", "")
        return contents.get("value", "") if isinstance(contents, dict) else str(contents)

    def close(self) -> None:
        try:
            self.request("shutdown", None, timeout=5)
            self.notify("exit", None)
            self.proc.wait(timeout=5)
        except Exception:
            self.proc.kill()
            self.proc.wait()
