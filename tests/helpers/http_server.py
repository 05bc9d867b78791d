"""A local HTTP server on 127.0.0.1 whose files can be told to misbehave (for the download tests)."""

from __future__ import annotations

from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler


@dataclass
class Resource:
    data: bytes
    etag: str | None = '"v1"'
    last_modified: str | None = None
    send_length: bool = True  # False: no Content-Length, the body ends when the connection closes
    truncate_once: bool = False  # the next answer stops half-way through its body
    always_416: bool = False  # every Range request gets 416
    range_from_zero: bool = False  # a Range request gets 206 with the whole file, labelled from byte 0
    ignore_if_range: bool = False  # serve the range even when If-Range does not match
    log: list[dict] = field(default_factory=list)


class Handler(BaseHTTPRequestHandler):
    resources: dict[str, Resource] = {}

    def do_GET(self):  # noqa: N802 - http.server's naming
        res = self.resources.get(self.path)
        rng, if_range = self.headers.get("Range"), self.headers.get("If-Range")
        if res is None:
            self.send_error(404, "not here")
            return
        res.log.append({"range": rng, "if_range": if_range})
        data = res.data
        ranged = rng is not None
        if ranged and if_range is not None and not res.ignore_if_range:
            ranged = if_range in (res.etag, res.last_modified)
        start = int(rng.split("=")[1].split("-")[0]) if ranged else 0
        if ranged and (res.always_416 or start >= len(data)):
            self.send_response(416)
            self.send_header("Content-Range", f"bytes */{len(data)}")
            self.send_header("Content-Length", "0")
            self.end_headers()
            return
        if res.range_from_zero:
            start = 0
        body = data[start:]
        self.send_response(206 if ranged else 200)
        if ranged:
            self.send_header("Content-Range", f"bytes {start}-{len(data) - 1}/{len(data)}")
        if res.send_length:
            self.send_header("Content-Length", str(len(body)))
        if res.etag is not None:
            self.send_header("ETag", res.etag)
        if res.last_modified is not None:
            self.send_header("Last-Modified", res.last_modified)
        self.end_headers()
        if res.truncate_once:  # the connection drops half-way
            res.truncate_once = False
            body = body[: len(body) // 2]
        self.wfile.write(body)
        self.wfile.flush()
        self.close_connection = True

    def log_message(self, *args):
        pass
