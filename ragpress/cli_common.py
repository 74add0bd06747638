"""What every ``ragpress`` command shares: its consoles, failing with a message, the server it talks to and the
key it shows there."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Annotated, NoReturn, TypeVar

import typer
from rich.console import Console

from ragpress.base.settings import get_settings

if TYPE_CHECKING:
    from ragpress.client import Client, ServerError

Answer = TypeVar("Answer")
# Lines are not wrapped where the terminal would not: piped output and logs keep one message per line.
console = Console(soft_wrap=True)
err = Console(stderr=True, soft_wrap=True)

Server = Annotated[str | None, typer.Option(
    "--server", envvar="RAGPRESS_URL", show_envvar=True,
    help="Server URL; default: the configured host and port (RAGPRESS_HOST, RAGPRESS_PORT).")]
ApiKey = Annotated[str | None, typer.Option(
    "--api-key", envvar="RAGPRESS_API_KEY", show_envvar=True,
    help="API key for the server (`ragpress keys create --tenant NAME` makes one).")]

# Where a server listening on every interface is reached from this machine.
_WILDCARDS = {"0.0.0.0": "127.0.0.1", "::": "::1", "": "127.0.0.1"}


def fail(message: str, code: int = 1) -> NoReturn:
    """Say what went wrong (and what to do) on stderr and exit, without a traceback."""
    err.print(f"[red]error:[/red] {message}", highlight=False)
    raise typer.Exit(code)


def url_of(host: str, port: int) -> str:
    host = _WILDCARDS.get(host, host)
    return f"http://[{host}]:{port}" if ":" in host else f"http://{host}:{port}"


def server_url(server: str | None) -> str:
    """``server`` (``http://`` assumed when it names no scheme), or the configured host and port."""
    if server:
        return server.rstrip("/") if "://" in server else f"http://{server.rstrip('/')}"
    settings = get_settings()
    return url_of(settings.host, settings.port)


def client(server: str | None, api_key: str | None) -> Client:
    """A client of ``server_url(server)`` that presents ``api_key`` (an empty one is none)."""
    from ragpress.client import Client  # imported by the commands that need it, so every other one starts fast

    return Client(server_url(server), _usable_key(api_key))


def _usable_key(api_key: str | None) -> str | None:
    key = (api_key or "").strip()
    if key and not (key.isascii() and key.isprintable() and " " not in key):
        fail("the API key holds spaces or characters no HTTP header can carry; check --api-key / "
             "RAGPRESS_API_KEY.")
    return key or None


def running_server(server: str | None, api_key: str | None) -> Client:
    """A client of the server at ``server_url(server)``; fails when none answers there."""
    found = client(server, api_key)
    if not found.alive():
        fail(f"no ragpress server answers at {found.base_url}; start one with `ragpress serve`, or name yours "
             "with --server / RAGPRESS_URL.")
    return found


def explain(exc: ServerError, api_key: str | None) -> str:
    """The server's refusal, with what to do when it is about the key."""
    if exc.status != 401:
        return exc.message
    if api_key:
        return ("the server refused the API key (unknown or revoked): check --api-key / RAGPRESS_API_KEY, or "
                "create a key with `ragpress keys create --tenant NAME`.")
    return ("the server needs an API key: pass --api-key KEY or set RAGPRESS_API_KEY (create one with "
            "`ragpress keys create --tenant NAME` where the server's database is).")


def ask(server: str | None, api_key: str | None, call: Callable[[Client], Answer]) -> Answer:
    """What ``call`` gets from the running server; the server's refusal (an unknown job, an invalid pipeline, a
    missing key) or an answer no ragpress server gives is its message, as a failure."""
    from ragpress.client import ServerError

    try:
        return call(running_server(server, api_key))
    except ServerError as exc:
        fail(explain(exc, api_key))
