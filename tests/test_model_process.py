"""The frames between the server and its model process (model_process.py): arrays cross as
dtype, shape and bytes, numeric kinds only, and come back equal."""

from __future__ import annotations

import socket
import threading

import numpy as np
import pytest

from mlc.runtime.serve.model_process import (
    ModelProcessError,
    _receive,
    _send,
    pack_array,
    unpack_array,
)


@pytest.mark.parametrize("array", [
    np.arange(12, dtype=np.float64).reshape(4, 3), np.array([1.5, -2.0], dtype=np.float32),
    np.array([[1, 2]], dtype=np.int64), np.array([True, False]), np.zeros((0, 5)),
    np.asfortranarray(np.arange(6.0).reshape(2, 3))])
def test_arrays_cross_unchanged(array):
    back = unpack_array(pack_array(array))
    assert back.dtype == array.dtype and back.shape == array.shape
    assert np.array_equal(back, array)


def test_only_numeric_arrays_cross():
    with pytest.raises(ModelProcessError, match="only numeric"):
        pack_array(np.array(["a", "b"], dtype=object))


def test_frames_over_a_socket_pair_and_the_end_of_the_stream():
    a, b = socket.socketpair()
    with a, b:
        _send(a, b"")
        assert _receive(b) == b""
        sender = threading.Thread(target=_send, args=(a, b"x" * 300_000))
        sender.start()  # longer than a socket buffer: read while it is sent
        assert _receive(b) == b"x" * 300_000
        sender.join(30)
        a.sendall(b"\x05\x00")  # half a length, then the end
        a.shutdown(socket.SHUT_WR)
        with pytest.raises(ModelProcessError, match="inside a frame"):
            _receive(b)
    c, d = socket.socketpair()
    with c, d:
        c.close()
        assert _receive(d) is None  # the parent closed: the child's loop ends
