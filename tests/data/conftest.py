"""Fixtures of the data tests: a local HTTP server on 127.0.0.1 (see tests/helpers/http_server.py)."""

from __future__ import annotations

import threading
from http.server import ThreadingHTTPServer

import pytest

from tests.helpers.http_server import Handler


@pytest.fixture
def server(tmp_path, monkeypatch):
    """`(base_url, resources)`: put `Resource`s in `resources['/name']`; `$DEEPFIT_DATA` is `tmp_path/cache`."""
    monkeypatch.setenv("DEEPFIT_DATA", str(tmp_path / "cache"))
    Handler.resources = {}
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}", Handler.resources
    httpd.shutdown()
    httpd.server_close()
