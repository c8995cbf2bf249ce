"""A TCP proxy that kills connections on cue, to interrupt uploads for real."""

from __future__ import annotations

import socket
import threading


class KillingProxy:
    """Forwards 127.0.0.1:<port> to ``upstream``. ``kill_response(n)``: the n-th
    following response whose status line starts with ``status`` is not relayed and
    both connections are closed (the server did the work, the client never hears of it).
    ``kill_request(n, keep)``: the n-th following request starting with ``method`` is cut
    after ``keep`` bytes (the server never gets the whole body)."""

    def __init__(self, upstream_port: int) -> None:
        self.upstream = ("127.0.0.1", upstream_port)
        self.listener = socket.socket()
        self.listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.listener.bind(("127.0.0.1", 0))
        self.listener.listen(16)
        self.port = int(self.listener.getsockname()[1])
        self.lock = threading.Lock()
        self.response_countdown: int | None = None
        self.response_status = b""
        self.request_countdown: int | None = None
        self.request_method = b""
        self.request_keep = 0
        self.killed = 0
        threading.Thread(target=self._accept, daemon=True).start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def kill_response(self, n: int, status: bytes = b"HTTP/1.1 308") -> None:
        with self.lock:
            self.response_countdown, self.response_status = n, status

    def kill_request(self, n: int, keep: int, method: bytes = b"PUT ") -> None:
        with self.lock:
            self.request_countdown, self.request_keep, self.request_method = n, keep, method

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self.listener.accept()
            except OSError:
                return
            server = socket.create_connection(self.upstream)
            threading.Thread(target=self._pump, args=(client, server, True), daemon=True).start()
            threading.Thread(target=self._pump, args=(server, client, False), daemon=True).start()

    def _kill(self, a: socket.socket, b: socket.socket) -> None:
        self.killed += 1
        for s in (a, b):
            try:
                s.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            s.close()

    def _pump(self, src: socket.socket, dst: socket.socket, upward: bool) -> None:
        cutting: int | None = None  # bytes still to forward of a request being cut
        while True:
            try:
                data = src.recv(65536)
            except OSError:
                data = b""
            if not data:
                try:
                    dst.shutdown(socket.SHUT_WR)
                except OSError:
                    pass
                return
            with self.lock:
                if upward and cutting is None and data.startswith(self.request_method):
                    if self.request_countdown is not None:
                        self.request_countdown -= 1
                        if self.request_countdown == 0:
                            self.request_countdown = None
                            cutting = self.request_keep
                if not upward and data.startswith(self.response_status):
                    if self.response_countdown is not None:
                        self.response_countdown -= 1
                        if self.response_countdown == 0:
                            self.response_countdown = None
                            self._kill(src, dst)
                            return
            if cutting is not None:
                if len(data) >= cutting:
                    try:
                        dst.sendall(data[:cutting])
                    except OSError:
                        pass
                    self._kill(src, dst)
                    return
                cutting -= len(data)
            try:
                dst.sendall(data)
            except OSError:
                return

    def close(self) -> None:
        self.listener.close()
