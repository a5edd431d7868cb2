"""A small standard-library HTTP client for JSON APIs (the STAC catalog).

QGIS's own Python has neither requests nor pystac-client, so the core speaks HTTP with
urllib. What it adds: a budget per request (all attempts and back-off sleeps together, so
an unreachable catalog fails within `timeout` seconds instead of hanging the caller),
retries with exponential back-off and jitter on connection errors, 429 and 5xx (honouring
Retry-After), an opener the caller may supply (the QGIS plugin passes one built from QGIS's
proxy settings), and a User-Agent naming rsbatch. Failures raise `CatalogError` with the
URL and what happened.
"""

from __future__ import annotations

import email.utils
import functools
import http.client
import json
import os
import random
import socket
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import timezone
from importlib.metadata import PackageNotFoundError
from importlib.metadata import version as dist_version
from typing import Any

from .errors import CatalogError, InvalidInput

#: statuses worth another attempt: throttling and the server's own trouble
RETRY_STATUSES = frozenset({408, 425, 429, 500, 502, 503, 504})


@functools.lru_cache(maxsize=1)
def version() -> str:
    """rsbatch's version: the installed distribution's, else metadata.txt's, else 'dev'."""
    try:
        return dist_version("rsbatch")
    except PackageNotFoundError:
        pass
    here = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    # the plugin zip carries metadata.txt in the package; the repository at its root
    for folder in (here, os.path.dirname(here)):
        try:
            with open(os.path.join(folder, "metadata.txt"), encoding="utf-8") as handle:
                for line in handle:
                    if line.strip().startswith("version="):
                        return line.split("=", 1)[1].strip()
        except OSError:
            continue
    return "dev"


def user_agent() -> str:
    return f"rsbatch/{version()}"


@dataclass(frozen=True)
class Response:
    """One HTTP answer: status, headers (lower-case keys), final URL and the raw body."""

    status: int
    url: str
    body: bytes
    headers: Mapping[str, str] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return 200 <= self.status < 300

    def check(self) -> Response:
        """This response if it is a success; CatalogError with status and body if not."""
        if not self.ok:
            raise CatalogError(
                f"{self.url} answered HTTP {self.status}: {_excerpt(self.body)!r}")
        return self

    def json(self) -> Any:
        """The body as JSON; CatalogError (showing what came instead) when it is not."""
        try:
            return json.loads(self.body.decode("utf-8-sig"))
        except (UnicodeDecodeError, ValueError) as exc:
            kind = self.headers.get("content-type", "no content type")
            raise CatalogError(
                f"{self.url} answered with something that is not JSON ({kind}): "
                f"{_excerpt(self.body)!r}"
            ) from exc


def _excerpt(body: bytes, limit: int = 120) -> str:
    text = body.decode("utf-8", errors="replace").strip().replace("\n", " ")
    return text if len(text) <= limit else text[:limit] + "…"


def _retry_after(value: str | None, now: float) -> float | None:
    """Seconds to wait from a Retry-After header (delta-seconds or HTTP-date)."""
    if not value:
        return None
    text = value.strip()
    if text.isdigit():
        return float(text)
    try:
        when = email.utils.parsedate_to_datetime(text)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=timezone.utc)
    return max(0.0, when.timestamp() - now)


def build_opener(proxies: Mapping[str, str] | None = None) -> urllib.request.OpenerDirector:
    """An opener using `proxies` ({'http': url, 'https': url}); None uses the environment's."""
    handlers: list[urllib.request.BaseHandler] = []
    if proxies is not None:
        handlers.append(urllib.request.ProxyHandler(dict(proxies)))
    return urllib.request.build_opener(*handlers)


class HttpClient:
    """Blocking JSON-over-HTTP with a per-request budget, retries and a pluggable opener.

    `timeout` bounds one logical request including every retry and back-off; a single
    attempt gets at most `attempt_timeout` (default a third of `timeout`) so that a hanging
    server still leaves room for another try.
    """

    def __init__(self, *, timeout: float = 30.0, attempt_timeout: float | None = None,
                 retries: int = 4, backoff: float = 0.5, max_backoff: float = 8.0,
                 opener: urllib.request.OpenerDirector | None = None,
                 proxies: Mapping[str, str] | None = None,
                 headers: Mapping[str, str] | None = None,
                 sleep: Callable[[float], None] = time.sleep,
                 clock: Callable[[], float] = time.monotonic,
                 rng: random.Random | None = None) -> None:
        if timeout <= 0:
            raise InvalidInput(f"timeout must be positive, got {timeout}")
        if opener is not None and proxies is not None:
            raise InvalidInput("pass either an opener or proxies, not both")
        self.timeout = float(timeout)
        self.attempt_timeout = float(attempt_timeout or max(timeout / 3.0, min(timeout, 1.0)))
        self.retries = max(0, int(retries))
        self.backoff = backoff
        self.max_backoff = max_backoff
        self.opener = opener or build_opener(proxies)
        self.headers = {"User-Agent": user_agent(), "Accept": "application/geo+json, "
                        "application/json;q=0.9, */*;q=0.1", **(headers or {})}
        self._sleep = sleep
        self._clock = clock
        self._rng = rng or random.Random()  # noqa: S311 - jitter, not cryptography

    # -- public ------------------------------------------------------------------------
    def get_json(self, url: str) -> Any:
        return self.request("GET", url).check().json()

    def post_json(self, url: str, body: Any) -> Any:
        return self.request("POST", url, body).check().json()

    def request(self, method: str, url: str, body: Any = None,
                headers: Mapping[str, str] | None = None) -> Response:
        """Send one request, retrying transient failures within the budget.

        Returns the final Response whatever its status (callers decide what a 404 means);
        raises CatalogError when the server could not be reached or kept failing.
        """
        data = None
        all_headers = dict(self.headers)
        if body is not None:
            data = json.dumps(body).encode("utf-8")
            all_headers["Content-Type"] = "application/json"
        all_headers.update(headers or {})
        deadline = self._clock() + self.timeout
        attempt = 0
        while True:
            remaining = deadline - self._clock()
            if remaining <= 0:
                raise CatalogError(f"{method} {url}: no answer within {self.timeout:g} s")
            try:
                response = self._once(method, url, data, all_headers,
                                      min(self.attempt_timeout, remaining))
            except _Transient as exc:
                problem, wait = str(exc), None
            else:
                if response.status not in RETRY_STATUSES:
                    return response
                problem = f"HTTP {response.status} {_excerpt(response.body, 80)!r}"
                # the server's own advice beats our back-off (throttling, maintenance)
                wait = _retry_after(response.headers.get("retry-after"), time.time())
            if attempt >= self.retries:
                raise CatalogError(
                    f"{method} {url} failed after {attempt + 1} attempt(s): {problem}")
            if wait is None:
                ceiling = min(self.max_backoff, self.backoff * (2 ** attempt))
                wait = ceiling / 2 + self._rng.uniform(0, ceiling / 2)
            remaining = deadline - self._clock()
            if wait >= remaining:
                raise CatalogError(
                    f"{method} {url} failed ({problem}); the next try would be after "
                    f"{wait:.1f} s, beyond the {self.timeout:g} s allowed")
            self._sleep(wait)
            attempt += 1

    # -- internals -----------------------------------------------------------------------
    def _once(self, method: str, url: str, data: bytes | None, headers: Mapping[str, str],
              timeout: float) -> Response:
        if not url.lower().startswith(("http://", "https://")):
            raise CatalogError(f"'{url}' is not an http(s) URL")
        request = urllib.request.Request(url, data=data, headers=dict(headers), method=method)  # noqa: S310 - scheme checked above
        try:
            with self.opener.open(request, timeout=timeout) as answer:
                return Response(answer.status, answer.geturl(), answer.read(),
                                {k.lower(): v for k, v in answer.headers.items()})
        except urllib.error.HTTPError as exc:
            try:
                body = exc.read()
            except (OSError, http.client.HTTPException):
                body = b""
            finally:
                exc.close()
            headers_out = {k.lower(): v for k, v in (exc.headers or {}).items()}
            return Response(exc.code, exc.geturl() or url, body, headers_out)
        except urllib.error.URLError as exc:
            reason = exc.reason
            if isinstance(reason, (socket.timeout, TimeoutError)):
                raise _Transient(f"no answer within {timeout:.1f} s") from exc
            if isinstance(reason, socket.gaierror):
                raise _Transient(f"host name not found ({reason})") from exc
            if isinstance(reason, ConnectionRefusedError):
                raise _Transient("connection refused") from exc
            raise _Transient(f"cannot connect: {reason}") from exc
        except (socket.timeout, TimeoutError) as exc:
            raise _Transient(f"no answer within {timeout:.1f} s") from exc
        except (ConnectionError, http.client.HTTPException, OSError) as exc:
            raise _Transient(f"connection failed: {type(exc).__name__}: {exc}") from exc


class _Transient(Exception):
    """A failure another attempt may cure; turned into CatalogError when attempts run out."""
