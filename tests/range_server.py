"""A local static file server with HTTP Range support that counts the bytes it sends.

GDAL reads COGs over HTTP with range requests; the tests use this server to prove the
worker reads only the parts it needs, and to serve 404s and broken files.
"""

from __future__ import annotations

import os
import re
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

_RANGE = re.compile(r"bytes=(\d+)-(\d*)")


class RangeServer:
    """`latency` (seconds) is added to every request, as a far-away object store would."""

    def __init__(self, root: str, latency: float = 0.0) -> None:
        self.root = root
        self.latency = latency
        self.bytes_sent = 0
        self.requests: list[tuple[str, str, str | None]] = []
        self._lock = threading.Lock()
        server = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: object) -> None:
                pass

            def _path(self) -> str | None:
                local = os.path.normpath(os.path.join(server.root, self.path.lstrip("/")))
                if not local.startswith(os.path.abspath(server.root)) or not os.path.isfile(local):
                    return None
                return local

            def do_HEAD(self) -> None:
                self._serve(head=True)

            def do_GET(self) -> None:
                self._serve(head=False)

            def _serve(self, head: bool) -> None:
                with server._lock:
                    server.requests.append((self.command, self.path, self.headers.get("Range")))
                if server.latency:
                    time.sleep(server.latency)
                local = self._path()
                if local is None:
                    self.send_error(404)
                    return
                size = os.path.getsize(local)
                match = _RANGE.match(self.headers.get("Range") or "")
                start, end = 0, size - 1
                if match:
                    start = int(match.group(1))
                    end = min(int(match.group(2)) if match.group(2) else size - 1, size - 1)
                    if start >= size:
                        self.send_response(416)
                        self.send_header("Content-Range", f"bytes */{size}")
                        self.end_headers()
                        return
                    self.send_response(206)
                    self.send_header("Content-Range", f"bytes {start}-{end}/{size}")
                else:
                    self.send_response(200)
                self.send_header("Accept-Ranges", "bytes")
                self.send_header("Content-Length", str(end - start + 1))
                self.send_header("Content-Type", "image/tiff")
                self.end_headers()
                if head:
                    return
                with open(local, "rb") as fh:
                    fh.seek(start)
                    data = fh.read(end - start + 1)
                with server._lock:
                    server.bytes_sent += len(data)
                self.wfile.write(data)

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        self._thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self._thread.start()

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()
