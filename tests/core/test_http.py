"""core.http against the local test server: retries, budgets, garbage, proxies, User-Agent."""

from __future__ import annotations

import email.utils
import socket
import time
import urllib.error
import urllib.request

import pytest

from qgis_rsbatch.core import http
from qgis_rsbatch.core.errors import CatalogError, InvalidInput, SourceUnavailable
from tests.stac_server import StacServer


class Sleeps:
    """Records requested sleeps instead of sleeping."""

    def __init__(self) -> None:
        self.calls: list[float] = []

    def __call__(self, seconds: float) -> None:
        self.calls.append(seconds)


def client(**options: object) -> http.HttpClient:
    defaults: dict = {"timeout": 5.0, "backoff": 0.01, "max_backoff": 0.05}
    defaults.update(options)
    return http.HttpClient(**defaults)


def test_get_json_sends_rsbatch_user_agent(stac_server: StacServer) -> None:
    landing = client().get_json(stac_server.url)
    assert landing["type"] == "Catalog"
    agent = stac_server.requests[-1].headers["user-agent"]
    assert agent == f"rsbatch/{http.version()}"
    assert agent.startswith("rsbatch/")
    assert agent != "rsbatch/"


def test_post_json_sends_a_json_body(stac_server: StacServer) -> None:
    page = client().post_json(f"{stac_server.url}/search", {"limit": 1})
    assert page["type"] == "FeatureCollection"
    seen = stac_server.requests[-1]
    assert (seen.method, seen.body) == ("POST", {"limit": 1})
    assert seen.headers["content-type"] == "application/json"


def test_500s_are_retried_until_success(stac_server: StacServer) -> None:
    stac_server.fail("status", path="/v1", status=500, times=2)
    assert client().get_json(stac_server.url)["type"] == "Catalog"
    assert len(stac_server.requests) == 3


def test_dropped_connections_are_retried(stac_server: StacServer) -> None:
    stac_server.fail("drop", path="/v1", times=1)
    assert client().get_json(stac_server.url)["type"] == "Catalog"
    assert len(stac_server.requests) == 2


def test_persistent_5xx_gives_catalog_error_with_url_and_status(stac_server: StacServer,
                                                                ) -> None:
    stac_server.fail("status", path="/v1", status=503, times=100)
    with pytest.raises(CatalogError) as caught:
        client(retries=2).get_json(stac_server.url)
    message = str(caught.value)
    assert stac_server.url in message
    assert "HTTP 503" in message
    assert "3 attempt(s)" in message
    assert len(stac_server.requests) == 3
    assert isinstance(caught.value, SourceUnavailable)  # retryable by the caller


def test_429_honours_retry_after(stac_server: StacServer) -> None:
    stac_server.fail("status", path="/v1", status=429, headers={"Retry-After": "2"})
    sleeps = Sleeps()
    assert client(sleep=sleeps).get_json(stac_server.url)["type"] == "Catalog"
    assert sleeps.calls == [2.0]  # the server's advice, not our back-off


def test_retry_after_really_waits(stac_server: StacServer) -> None:
    stac_server.fail("status", path="/v1", status=503, headers={"Retry-After": "1"})
    began = time.monotonic()
    client().get_json(stac_server.url)
    assert 0.9 <= time.monotonic() - began < 3


def test_retry_after_beyond_the_budget_fails_at_once(stac_server: StacServer) -> None:
    stac_server.fail("status", path="/v1", status=429, headers={"Retry-After": "120"})
    sleeps = Sleeps()
    with pytest.raises(CatalogError, match=r"after 120\.0 s, beyond the 5 s allowed"):
        client(sleep=sleeps).get_json(stac_server.url)
    assert sleeps.calls == []


def test_retry_after_as_an_http_date() -> None:
    now = time.time()
    stamp = email.utils.formatdate(now + 30, usegmt=True)
    assert http._retry_after(stamp, now) == pytest.approx(30, abs=1.5)
    assert http._retry_after("7", now) == 7.0
    assert http._retry_after("soon", now) is None


def test_back_off_grows_exponentially_with_jitter(stac_server: StacServer) -> None:
    stac_server.fail("status", path="/v1", status=502, times=4)
    sleeps = Sleeps()
    client(sleep=sleeps, backoff=1.0, max_backoff=4.0, timeout=60).get_json(stac_server.url)
    assert len(sleeps.calls) == 4
    for attempt, slept in enumerate(sleeps.calls):
        ceiling = min(4.0, 2.0 ** attempt)
        assert ceiling / 2 <= slept <= ceiling


def test_404_is_returned_not_retried(stac_server: StacServer) -> None:
    response = client().request("GET", f"{stac_server.url}/nowhere")
    assert (response.status, response.ok) == (404, False)
    assert len(stac_server.requests) == 1
    with pytest.raises(CatalogError, match="answered HTTP 404"):
        client().get_json(f"{stac_server.url}/nowhere")


@pytest.mark.parametrize("kind", ["garbage", "truncated"])
def test_garbage_is_a_catalog_error_showing_what_came(stac_server: StacServer,
                                                      kind: str) -> None:
    stac_server.fail(kind, path="/v1")
    with pytest.raises(CatalogError, match="not JSON") as caught:
        client().get_json(stac_server.url)
    assert stac_server.url in str(caught.value)
    if kind == "garbage":
        assert "text/html" in str(caught.value)
        assert "captive portal" in str(caught.value)


def test_a_hanging_server_fails_within_the_budget(stac_server: StacServer) -> None:
    stac_server.fail("hang", path="/v1", seconds=10, times=5)
    began = time.monotonic()
    with pytest.raises(CatalogError, match="no answer within") as caught:
        client(timeout=1.0).get_json(stac_server.url)
    assert time.monotonic() - began < 2.0
    assert stac_server.url in str(caught.value)


def test_a_refused_port_fails_within_the_budget(refused_url: str) -> None:
    began = time.monotonic()
    with pytest.raises(CatalogError, match="connection refused") as caught:
        client(timeout=1.0, backoff=0.1).get_json(refused_url)
    assert time.monotonic() - began < 1.5
    assert refused_url in str(caught.value)


class _NoDns(urllib.request.BaseHandler):
    handler_order = 100  # before urllib's own HTTPHandler

    def http_open(self, request: urllib.request.Request) -> None:
        raise urllib.error.URLError(socket.gaierror(-2, "Name or service not known"))


def test_unknown_host_names_the_problem() -> None:
    opener = urllib.request.build_opener(_NoDns())
    with pytest.raises(CatalogError, match="host name not found"):
        client(opener=opener, timeout=0.5).get_json("http://stac.invalid/v1")


def test_an_opener_is_used_as_given(stac_server: StacServer) -> None:
    seen: list[str] = []

    class Spy(urllib.request.BaseHandler):
        handler_order = 100

        def http_request(self, request: urllib.request.Request) -> urllib.request.Request:
            seen.append(request.full_url)
            return request

    opener = urllib.request.build_opener(Spy())
    client(opener=opener).get_json(stac_server.url)
    assert seen == [stac_server.url]


def test_proxies_route_requests_through_the_proxy(stac_server: StacServer,
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("no_proxy", "NO_PROXY"):
        monkeypatch.delenv(name, raising=False)
    landing = client(proxies={"http": stac_server.origin}).get_json(
        "http://stac.example.org/v1")
    assert landing["type"] == "Catalog"
    seen = stac_server.requests[-1]
    assert seen.proxied
    assert seen.path == "/v1"


def test_opener_and_proxies_together_are_refused() -> None:
    with pytest.raises(InvalidInput):
        http.HttpClient(opener=urllib.request.build_opener(), proxies={})


def test_non_http_urls_are_refused() -> None:
    with pytest.raises(CatalogError, match="not an http"):
        client(retries=0).get_json("ftp://example.org/catalog.json")


class _Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.now += seconds


def test_the_default_budget_gives_up_within_30_seconds() -> None:
    """With the defaults, a catalog that never answers costs about 30 s, not minutes:
    every attempt waits its full timeout (simulated), back-offs included."""
    clock = _Clock()
    attempts: list[float] = []

    class Hang(urllib.request.BaseHandler):
        handler_order = 100

        def http_open(self, request: urllib.request.Request) -> None:
            attempts.append(request.timeout)
            clock.now += request.timeout
            raise urllib.error.URLError(socket.timeout("timed out"))

    hanging = http.HttpClient(opener=urllib.request.build_opener(Hang()), clock=clock,
                              sleep=clock.sleep)
    with pytest.raises(CatalogError, match="no answer"):
        hanging.get_json("http://catalog.example/v1")
    assert 25 <= clock.now <= 30.0
    assert len(attempts) >= 2  # a hang still leaves room for another try
    assert max(attempts) <= 10.0
