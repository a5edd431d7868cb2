"""QGIS's network proxy (Settings ▸ Options ▸ Network) as the `proxies` mapping core's catalog
search passes to urllib, so STAC requests go where every other QGIS request goes.

Read on the main thread (QgsNetworkAccessManager is a main-thread object) and handed to the
search task as plain strings. Returns None to mean "use the environment's proxies" (QGIS set
to use the system proxy, which urllib also reads from the environment), {} to mean "no proxy".
"""

from __future__ import annotations

from urllib.parse import quote

from qgis.core import QgsNetworkAccessManager, QgsSettings
from qgis.PyQt.QtNetwork import QNetworkProxy


def _excluded(url: str, prefixes: list[str]) -> bool:
    return any(p and url.startswith(p) for p in prefixes)


def proxies_for(url: str | None = None, settings: QgsSettings | None = None
                ) -> dict[str, str] | None:
    """The proxies QGIS would use for `url` (None: the environment's; {}: none)."""
    settings = settings or QgsSettings()
    enabled = str(settings.value("proxy/proxyEnabled", False)).lower() in ("true", "1")
    if not enabled:
        return {}
    kind = str(settings.value("proxy/proxyType", "DefaultProxy"))
    if kind == "DefaultProxy":
        return None  # the system's proxy: urllib reads the same environment
    manager = QgsNetworkAccessManager.instance()
    proxy = manager.fallbackProxy()
    if url and (_excluded(url, list(manager.excludeList()))
                or _excluded(url, list(getattr(manager, "noProxyList", list)()))):
        return {}
    host, port = proxy.hostName(), proxy.port()
    if not host:
        return {}
    # urllib cannot speak SOCKS: the search then fails saying so, rather than bypassing it
    scheme = "socks5" if proxy.type() == QNetworkProxy.ProxyType.Socks5Proxy else "http"
    auth = ""
    if proxy.user():
        auth = quote(proxy.user(), safe="")
        if proxy.password():
            auth += ":" + quote(proxy.password(), safe="")
        auth += "@"
    address = f"{scheme}://{auth}{host}" + (f":{port}" if port > 0 else "")
    return {"http": address, "https": address}
