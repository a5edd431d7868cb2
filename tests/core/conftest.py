"""Shared fixtures for the core's tests: the local STAC API and real Earth Search items."""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from tests.stac_server import StacServer

#: 25 real Earth Search v1 items recorded by other projects (see its SOURCES.md); read in
#: place, never copied into the repository
REAL_ITEMS = os.environ.get(
    "RSBATCH_REAL_ITEMS",
    os.path.join(os.path.dirname(__file__), "..", "..", "..", "shared", "real-data",
                 "earth-search-v1", "earth_search_v1_items.json"),
)


def real_items_path() -> str | None:
    return os.path.abspath(REAL_ITEMS) if os.path.exists(REAL_ITEMS) else None


@pytest.fixture(scope="session")
def real_items_file() -> str:
    """Path of the real ItemCollection; the test is skipped where it is absent."""
    path = real_items_path()
    if path is None:
        pytest.skip("real Earth Search items not present (../shared/real-data)")
    return path


@pytest.fixture(scope="session")
def real_items(real_items_file: str) -> list[dict]:
    with open(real_items_file, encoding="utf-8") as handle:
        return json.load(handle)["features"]


@pytest.fixture
def stac_server_factory() -> Iterator[Callable[..., StacServer]]:
    """Start StacServers with any items and options; all are stopped after the test."""
    servers: list[StacServer] = []

    def start(items: Any = (), **options: Any) -> StacServer:
        server = StacServer(items, **options).start()
        servers.append(server)
        return server

    yield start
    for server in servers:
        server.stop()


@pytest.fixture
def stac_server(stac_server_factory: Callable[..., StacServer]) -> StacServer:
    """An empty STAC API with pages of 2; give it items with `server.items = [...]`."""
    return stac_server_factory()


@pytest.fixture
def refused_url() -> str:
    """An http URL on 127.0.0.1 where nothing listens (connection refused)."""
    import socket

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    return f"http://127.0.0.1:{port}/v1"
