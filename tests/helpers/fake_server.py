"""A ragpress REST client wired to canned answers instead of a server, recording what it was asked."""

from __future__ import annotations

import json
from typing import Any

import httpx

from ragpress.client import Client


class FakeServer:
    """``answers``: ``(method, path)`` -> (status, JSON body); anything else is a 404 in the API's error shape."""

    def __init__(self, answers: dict[tuple[str, str], tuple[int, Any]]) -> None:
        self.answers = answers
        self.requests: list[httpx.Request] = []

    def client(self) -> Client:
        client = Client("http://ragpress.test")
        client.http = httpx.Client(base_url="http://ragpress.test", transport=httpx.MockTransport(self._answer))
        return client

    def _answer(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        status, body = self.answers.get((request.method, request.url.path),
                                        (404, {"error": {"code": "not_found", "message": "No such thing."}}))
        return httpx.Response(status, content=json.dumps(body).encode(), headers={"content-type": "application/json"})
