"""The model in a process of its own, beside the server's event loop.

One interpreter holds one GIL. A model thread beside a busy event loop releases the GIL
inside each torch operation and must take it back between operations; while the loop parses
and answers requests it holds the GIL for up to the switch interval (5 ms) each time, so a
model call of a dozen operations takes many times its own length. Measured with
bench/bench_serve_overload.py (a 1 ms call, client and server sharing 2 cores): 8 clients
got about 70 answers a second from a model thread and over 1,000 from a model process; with
the server alone on one core, where the two threads cannot contend across cores, the thread
did as well (docs/benchmarks.md has every run). In a process of its own the model
keeps its share of the CPU whatever the loop does; the server only sends rows and reads
predictions over a socket pair (two system calls each way, no pickle).

    parent                                          child (`python -m ...model_process FD`)
    {"model_uri", "tracking_uri", "allow_pickle"} (JSON frame) ->   loads the model, warms it
                                               <-   {"ok": true, meta} or {"ok": false, error}
    rows (array frame)                         ->   model.predict(rows)
                                               <-   predictions (array frame) or error frame

A frame is its length (8 bytes) then its payload; an array's payload is its dtype (numeric
kinds only), its shape and its bytes. The child ignores SIGTERM and SIGINT: the server
drains first and then closes the socket, and the child exits when it reads the end of it
(also when the server is killed).
"""

from __future__ import annotations

import json
import logging
import os
import signal
import socket
import struct
import subprocess
import sys
import threading

import numpy as np

from .loader import LoadedModel

__all__ = ["ModelProcess", "ModelProcessError"]

log = logging.getLogger("mlc.serve.model")
_LENGTH = struct.Struct("<Q")
_ARRAY = struct.Struct("<4sB")  # dtype (numpy's str, e.g. "<f8"), number of dimensions
_OK, _ERROR = b"A", b"E"  # an array follows, or an error message
_STOP_SECONDS = 10


class ModelProcessError(Exception):
    """The model process failed to load, failed a call, or is gone."""


def _send(sock: socket.socket, payload: bytes) -> None:
    sock.sendall(_LENGTH.pack(len(payload)) + payload)


def _receive(sock: socket.socket) -> bytes | None:
    """One frame, or None at the end of the stream."""
    head = _exactly(sock, _LENGTH.size)
    if head is None:
        return None
    n = _LENGTH.unpack(head)[0]
    payload = _exactly(sock, n) if n else b""
    if payload is None:
        raise ModelProcessError("the stream ended inside a frame")
    return payload


def _exactly(sock: socket.socket, n: int) -> bytes | None:
    buffer = bytearray(n)
    view, got = memoryview(buffer), 0
    while got < n:
        k = sock.recv_into(view[got:])
        if k == 0:
            if got == 0:
                return None
            raise ModelProcessError("the stream ended inside a frame")
        got += k
    return bytes(buffer)


def pack_array(array: np.ndarray) -> bytes:
    array = np.ascontiguousarray(array)
    if array.dtype.kind not in "biuf":
        raise ModelProcessError(f"only numeric arrays cross to the model process, not "
                                f"{array.dtype}")
    return (_ARRAY.pack(array.dtype.str.encode(), array.ndim)
            + struct.pack(f"<{array.ndim}Q", *array.shape) + array.tobytes())


def unpack_array(payload: bytes) -> np.ndarray:
    kind, ndim = _ARRAY.unpack_from(payload)
    dtype = np.dtype(kind.rstrip(b"\0").decode())
    if dtype.kind not in "biuf":
        raise ModelProcessError(f"not a numeric array: {dtype}")
    shape = struct.unpack_from(f"<{ndim}Q", payload, _ARRAY.size)
    start = _ARRAY.size + 8 * ndim
    return np.frombuffer(payload, dtype=dtype, offset=start).reshape(shape)


class ModelProcess:
    """The parent's end: start() loads the model in the child and returns a LoadedModel
    whose `predict` is a call to it (blocking; called by one model thread at a time)."""

    def __init__(self, model_uri: str, tracking_uri: str, allow_pickle: bool | None = None,
                 reference_rows: int = 0):
        self.model_uri, self.tracking_uri = model_uri, tracking_uri
        self.allow_pickle = allow_pickle  # None: the loader reads MLC_ALLOW_PICKLE
        self.reference_rows = reference_rows  # rows of the reference sample sent back
        self._sock: socket.socket | None = None
        self._proc: subprocess.Popen | None = None
        self._lock = threading.Lock()

    def start(self) -> LoadedModel:
        ours, theirs = socket.socketpair()
        try:
            self._proc = subprocess.Popen(
                [sys.executable, "-m", "mlc.runtime.serve.model_process", str(theirs.fileno())],
                pass_fds=(theirs.fileno(),), stdin=subprocess.DEVNULL)
        finally:
            theirs.close()
        self._sock = ours
        _send(ours, json.dumps({"model_uri": self.model_uri,
                                "allow_pickle": self.allow_pickle,
                                "reference_rows": self.reference_rows,
                                "tracking_uri": self.tracking_uri}).encode())
        answer = _receive(ours)
        if answer is None:
            self.close()
            raise ModelProcessError(f"the model process exited while loading (status "
                                    f"{self._proc.wait()})")
        meta = json.loads(answer)
        if not meta.pop("ok"):
            self.close()
            raise ModelProcessError(meta["error"])
        log.info("the model runs in process %d", self._proc.pid)
        reference = meta.pop("reference", None)
        return LoadedModel(predict=self.predict, **meta,
                           reference=None if reference is None
                           else np.asarray(reference, dtype=np.float64))

    def alive(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    def predict(self, rows: np.ndarray) -> np.ndarray:
        with self._lock:
            sock = self._sock
            if sock is None:
                raise ModelProcessError("the model process is stopped")
            try:
                _send(sock, pack_array(rows))
                answer = _receive(sock)
            except OSError as exc:
                raise ModelProcessError(f"the model process is gone: {exc}") from None
        if answer is None:
            raise ModelProcessError(f"the model process exited (status {self._proc.poll()})")
        if answer[:1] == _ERROR:
            raise ModelProcessError(answer[1:].decode("utf-8", "replace"))
        return unpack_array(answer[1:])

    def close(self) -> None:
        """Close the socket (the child exits at its end) and wait for the child."""
        with self._lock:
            sock, self._sock = self._sock, None
        if sock is not None:
            sock.close()
        if self._proc is not None and self._proc.poll() is None:
            try:
                self._proc.wait(_STOP_SECONDS)
            except subprocess.TimeoutExpired:
                self._proc.kill()
                self._proc.wait()


def _child(fd: int) -> int:
    # the server drains on SIGTERM, then closes our socket: a signal here would fail the
    # requests still in flight (a terminal's Ctrl-C reaches the whole process group)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: "
                        "%(message)s")
    sock = socket.socket(fileno=fd)
    request = _receive(sock)
    if request is None:
        return 0
    config = json.loads(request)
    try:
        from .loader import load

        model = load(config["model_uri"], config["tracking_uri"],
                     allow_pickle=config.get("allow_pickle"),
                     reference_rows=config.get("reference_rows", 0))
    except Exception as exc:  # the parent retries, as it does for a load in its own thread
        _send(sock, json.dumps({"ok": False, "error": str(exc)}).encode())
        return 1
    meta = {"ok": True, "name": model.name, "version": model.version, "alias": model.alias,
            "trained_at": model.trained_at, "features": model.features, "task": model.task,
            "output_width": model.output_width, "spec": model.spec,
            # complete rows only (loader.reference_sample): no NaN in the JSON
            "reference": None if model.reference is None else model.reference.tolist()}
    _send(sock, json.dumps(meta).encode())
    while True:
        try:
            request = _receive(sock)
        except (OSError, ModelProcessError):
            return 0
        if request is None:
            return 0
        try:
            answer = _OK + pack_array(np.asarray(model.predict(unpack_array(request))))
        except Exception as exc:  # the batch fails; the model stays up for the next one
            answer = _ERROR + f"{type(exc).__name__}: {exc}".encode()
        try:
            _send(sock, answer)
        except OSError:
            return 0


if __name__ == "__main__":
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    sys.exit(_child(int(sys.argv[1])))
