"""What every ``ragpress`` command shares: its consoles, failing with a message, and the server it talks to."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, NoReturn, TypeVar

import typer
from rich.console import Console

from ragpress.base.settings import get_settings

if TYPE_CHECKING:
    from ragpress.client import Client

Answer = TypeVar("Answer")
console = Console()
err = Console(stderr=True)


def fail(message: str, code: int = 1) -> NoReturn:
    """Say what went wrong (and what to do) on stderr and exit, without a traceback."""
    err.print(f"[red]error:[/red] {message}")
    raise typer.Exit(code)


def server_url(server: str | None) -> str:
    """``server``, or the configured host and port."""
    settings = get_settings()
    return server or f"http://{settings.host}:{settings.port}"


def running_server(server: str | None) -> Client:
    """A client of the server at ``server_url(server)``; fails when none answers there."""
    from ragpress.client import Client  # imported by the commands that need it, so every other one starts fast

    client = Client(server_url(server))
    if not client.alive():
        fail(f"no ragpress server answers at {server_url(server)}; start one with `ragpress serve`.")
    return client


def ask(server: str | None, call: Callable[[Client], Answer]) -> Answer:
    """What ``call`` gets from the running server; the server's refusal (an unknown job, an invalid pipeline) is
    its message, as a failure."""
    from ragpress.client import ServerError

    try:
        return call(running_server(server))
    except ServerError as exc:
        fail(exc.message)
