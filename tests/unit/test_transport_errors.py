"""No answer: whether the portal may have seen the request, told by the exception's type.

A request that never connected (refused, no route, no DNS name) cannot have removed
anything; one whose connection dropped after it went out may have. The messages of these
errors vary by OS and locale, so the types decide, as urllib3 and httpx do.
"""

from __future__ import annotations

import socket
import threading
from collections.abc import Iterator

import pytest
import requests
from urllib3.exceptions import (
    MaxRetryError,
    NameResolutionError,
    NewConnectionError,
    ProtocolError,
)
from urllib3.exceptions import ProxyError as Urllib3ProxyError

from cleanup.errors import NetworkError
from cleanup.pacing.throttle import Throttle
from cleanup.portal.auth import WebhookAuth
from cleanup.portal.transport import HTTPTransport, _network_error

URL = "http://127.0.0.1/rest/1/code/batch.json"


def refused_chain(error: Exception) -> requests.exceptions.ConnectionError:
    """How requests wraps a failed connect: ConnectionError(MaxRetryError(reason=...))."""
    return requests.exceptions.ConnectionError(MaxRetryError(None, URL, error))  # type: ignore[arg-type]


CASES = {
    "refused, in another language": (
        refused_chain(NewConnectionError(None, "Verbindungsaufbau abgelehnt")),  # type: ignore[arg-type]
        "connect",
        False,
    ),
    "no such host": (
        refused_chain(NameResolutionError("portal.invalid", None, OSError("Temporärer Fehler"))),  # type: ignore[arg-type]
        "connect",
        False,
    ),
    "through a proxy that refused": (
        requests.exceptions.ProxyError(
            MaxRetryError(
                None,  # type: ignore[arg-type]
                URL,
                Urllib3ProxyError("Unable to connect to proxy", NewConnectionError(None, "x")),  # type: ignore[arg-type]
            )
        ),
        "connect",
        False,
    ),
    "reset after sending, whatever its text says": (
        requests.exceptions.ConnectionError(
            ProtocolError("Connection aborted.", ConnectionResetError("Connection refused"))
        ),
        "connection_lost",
        True,
    ),
    "connect timeout": (requests.exceptions.ConnectTimeout("slow"), "connect_timeout", False),
    "TLS handshake": (requests.exceptions.SSLError("wrong version number"), "ssl", False),
    "read timeout": (requests.exceptions.ReadTimeout("60 s"), "timeout", True),
    "anything else": (requests.exceptions.ChunkedEncodingError("cut"), "network", True),
}


@pytest.mark.parametrize(("exc", "cause", "maybe_sent"), CASES.values(), ids=CASES)
def test_the_type_tells_whether_the_portal_may_have_seen_it(
    exc: requests.exceptions.RequestException, cause: str, maybe_sent: bool
) -> None:
    error = _network_error(exc)
    assert (error.cause, error.maybe_sent) == (cause, maybe_sent)
    assert str(error).startswith(f"{cause}: ")


@pytest.fixture
def hang_up() -> Iterator[int]:
    """A server that reads the request and closes without answering."""
    server = socket.create_server(("127.0.0.1", 0))

    def serve() -> None:
        conn, _ = server.accept()
        conn.recv(65536)
        conn.close()

    threading.Thread(target=serve, daemon=True).start()
    yield server.getsockname()[1]
    server.close()


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def send(port: int) -> NetworkError:
    transport = HTTPTransport(
        WebhookAuth(f"http://127.0.0.1:{port}/rest/1/code/"), Throttle(100.0, 10)
    )
    with pytest.raises(NetworkError) as caught:
        transport.batch({"r1": "x"})
    transport.close()
    return caught.value


def test_a_refused_connection_never_reached_the_portal() -> None:
    error = send(closed_port())
    assert (error.cause, error.maybe_sent) == ("connect", False)


def test_a_dropped_connection_may_have_been_acted_on(hang_up: int) -> None:
    error = send(hang_up)
    assert (error.cause, error.maybe_sent) == ("connection_lost", True)
