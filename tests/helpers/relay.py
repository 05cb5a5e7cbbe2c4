"""A local TCP relay on 127.0.0.1 in front of the sandbox, to make an outage (issue 17).

`Relay(target_port)` listens on a port of its own and pipes each connection to the target.
`refuse()` closes the listening socket (new connections are refused) and cuts every open
connection; `drop()` keeps listening but accepts each connection, reads what comes, and
closes it without a reply (a balancer with no backend); `restore()` listens again on the
same port and pipes as before. Used by tests/e2e/test_bad_night.py and the bad-night
benchmark; no test double: real sockets, real HTTP through them.
"""

from __future__ import annotations

import socket
import threading
from contextlib import suppress


class Relay:
    def __init__(self, target_port: int, target_host: str = "127.0.0.1") -> None:
        self.target = (target_host, target_port)
        self.mode = "up"  # up | refuse | drop
        self._lock = threading.Lock()
        self._open: set[socket.socket] = set()
        self._stop = threading.Event()
        self._listener: socket.socket | None = None
        self.port = 0
        self.dropped = 0  # connections accepted and closed while dropping
        self._listen()
        self._thread = threading.Thread(target=self._accept_loop, daemon=True)
        self._thread.start()

    # ------------------------------------------------------------------ control

    def url(self, url: str) -> str:
        """`url` (the sandbox's) with the relay's port instead of the target's."""
        return url.replace(f":{self.target[1]}/", f":{self.port}/", 1)

    def refuse(self) -> None:
        with self._lock:
            self.mode = "refuse"
            listener, self._listener = self._listener, None
        if listener is not None:
            listener.close()
        self._cut_all()

    def drop(self) -> None:
        with self._lock:
            self.mode = "drop"
        self._cut_all()
        if self._listener is None:
            self._listen()

    def restore(self) -> None:
        with self._lock:
            self.mode = "up"
        if self._listener is None:
            self._listen()

    def close(self) -> None:
        self._stop.set()
        self.refuse()
        self._thread.join(timeout=2)

    # ------------------------------------------------------------------ internals

    def _listen(self) -> None:
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(("127.0.0.1", self.port))
        sock.listen(64)
        sock.settimeout(0.05)
        self.port = sock.getsockname()[1]
        with self._lock:
            self._listener = sock

    def _accept_loop(self) -> None:
        while not self._stop.is_set():
            listener = self._listener
            if listener is None:
                self._stop.wait(0.02)
                continue
            try:
                client, _ = listener.accept()
            except (TimeoutError, OSError):
                continue
            if self.mode == "drop":
                threading.Thread(target=self._drop, args=(client,), daemon=True).start()
            else:
                threading.Thread(target=self._pipe_pair, args=(client,), daemon=True).start()

    def _drop(self, client: socket.socket) -> None:
        """Accept, read the request (it was sent), close without a reply."""
        with suppress(OSError):
            client.settimeout(0.5)
            client.recv(65536)
        with suppress(OSError):
            client.close()
        with self._lock:
            self.dropped += 1

    def _pipe_pair(self, client: socket.socket) -> None:
        try:
            upstream = socket.create_connection(self.target, timeout=5)
        except OSError:
            client.close()
            return
        upstream.settimeout(None)
        with self._lock:
            self._open.update((client, upstream))
        back = threading.Thread(target=self._pipe, args=(upstream, client), daemon=True)
        back.start()
        self._pipe(client, upstream)
        back.join()

    def _pipe(self, src: socket.socket, dst: socket.socket) -> None:
        try:
            while True:
                data = src.recv(65536)
                if not data:
                    break
                dst.sendall(data)
        except OSError:
            pass
        finally:
            for sock in (src, dst):
                with suppress(OSError):
                    sock.shutdown(socket.SHUT_RDWR)
                with suppress(OSError):
                    sock.close()
                with self._lock:
                    self._open.discard(sock)

    def _cut_all(self) -> None:
        with self._lock:
            socks, self._open = list(self._open), set()
        for sock in socks:
            with suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
            with suppress(OSError):
                sock.close()
