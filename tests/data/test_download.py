"""Downloads against a local HTTP server on 127.0.0.1: good archive, wrong checksum, truncated transfer
resumed, unsafe archives refused."""

from __future__ import annotations

import hashlib
import io
import tarfile
import threading
import zipfile
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from deepfit.data import ChecksumError, DownloadError, UnsafeArchiveError, download_data, download_file, untar_data
from deepfit.data.untar import URLS, extract_archive


class Handler(BaseHTTPRequestHandler):
    files: dict[str, bytes] = {}
    truncate_once: set[str] = set()
    log: list[tuple[str, str | None]] = []

    def do_GET(self):  # noqa: N802 - http.server's naming
        data = self.files.get(self.path)
        rng = self.headers.get("Range")
        self.log.append((self.path, rng))
        if data is None:
            self.send_error(404, "not here")
            return
        start = int(rng.split("=")[1].split("-")[0]) if rng else 0
        if start >= len(data) and rng:
            self.send_response(416)
            self.send_header("Content-Range", f"bytes */{len(data)}")
            self.end_headers()
            return
        body = data[start:]
        self.send_response(206 if rng else 200)
        if rng:
            self.send_header("Content-Range", f"bytes {start}-{len(data) - 1}/{len(data)}")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if self.path in self.truncate_once:  # the connection drops half-way
            self.truncate_once.discard(self.path)
            self.wfile.write(body[: len(body) // 2])
            self.wfile.flush()
            self.close_connection = True
            return
        self.wfile.write(body)

    def log_message(self, *args):
        pass


@pytest.fixture
def server(tmp_path, monkeypatch):
    monkeypatch.setenv("DEEPFIT_DATA", str(tmp_path / "cache"))
    Handler.files, Handler.truncate_once, Handler.log = {}, set(), []
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}", Handler
    httpd.shutdown()
    httpd.server_close()


def make_tgz(members: dict[str, bytes]) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tar:
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return buf.getvalue()


def sha(b: bytes) -> str:
    return hashlib.sha256(b).hexdigest()


def test_good_archive_is_downloaded_verified_and_extracted(server, tmp_path):
    base, h = server
    archive = make_tgz({"pets/a.txt": b"alpha", "pets/sub/b.txt": b"beta"})
    h.files["/pets.tgz"] = archive
    folder = untar_data(f"{base}/pets.tgz", sha256=sha(archive))
    assert folder == tmp_path / "cache" / "data" / "pets"
    assert (folder / "a.txt").read_bytes() == b"alpha" and (folder / "sub" / "b.txt").read_bytes() == b"beta"
    assert (tmp_path / "cache" / "archives" / "pets.tgz").read_bytes() == archive
    n = len(h.log)
    assert untar_data(f"{base}/pets.tgz", sha256=sha(archive)) == folder  # cached: no new request
    assert len(h.log) == n
    leftovers = [p.name for p in (tmp_path / "cache" / "data").iterdir() if p.name.startswith(".")]
    assert leftovers == []


def test_wrong_checksum_deletes_and_raises(server, tmp_path):
    base, h = server
    h.files["/data.bin"] = b"x" * 1000
    with pytest.raises(ChecksumError, match=r"data.bin: expected sha256 0{64}, got " + sha(b"x" * 1000)):
        download_data(f"{base}/data.bin", sha256="0" * 64)
    archives = tmp_path / "cache" / "archives"
    assert list(archives.iterdir()) == []  # neither the file nor a .part is left to be used
    with pytest.raises(ChecksumError):
        untar_data(f"{base}/data.bin", sha256="0" * 64)
    assert not (tmp_path / "cache" / "data" / "data").exists()


def test_truncated_transfer_is_resumed(server, tmp_path):
    base, h = server
    payload = bytes(range(256)) * 400
    h.files["/big.bin"] = payload
    h.truncate_once.add("/big.bin")
    path = download_file(f"{base}/big.bin", tmp_path / "big.bin", sha256=sha(payload))
    assert path.read_bytes() == payload
    assert h.log == [("/big.bin", None), ("/big.bin", f"bytes={len(payload) // 2}-")]


def test_partial_file_from_a_previous_run_is_resumed(server, tmp_path):
    base, h = server
    payload = b"0123456789" * 100
    h.files["/f.bin"] = payload
    (tmp_path / "f.bin.part").write_bytes(payload[:300])  # a killed earlier download
    download_file(f"{base}/f.bin", tmp_path / "f.bin", sha256=sha(payload))
    assert (tmp_path / "f.bin").read_bytes() == payload
    assert h.log == [("/f.bin", "bytes=300-")]
    assert not (tmp_path / "f.bin.part").exists()


def test_incomplete_after_retries_keeps_part(server, tmp_path):
    base, h = server
    h.files["/g.bin"] = b"z" * 1000
    h.truncate_once.add("/g.bin")
    with pytest.raises(DownloadError, match=r"incomplete after 1 attempts.*500 bytes are kept.*resumes"):
        download_file(f"{base}/g.bin", tmp_path / "g.bin", retries=0)
    assert (tmp_path / "g.bin.part").stat().st_size == 500
    download_file(f"{base}/g.bin", tmp_path / "g.bin")  # the next call finishes it
    assert (tmp_path / "g.bin").read_bytes() == b"z" * 1000


def test_http_error_is_named(server, tmp_path):
    base, _ = server
    with pytest.raises(DownloadError, match=r"cannot download .*/missing.tgz: HTTP 404"):
        download_file(f"{base}/missing.tgz", tmp_path / "m.tgz")


def _tar_with(info: tarfile.TarInfo, data: bytes = b"") -> Path:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        info.size = len(data) if info.isreg() else 0
        tar.addfile(info, io.BytesIO(data) if info.isreg() else None)
    return buf.getvalue()


def _member(name: str, kind=tarfile.REGTYPE, linkname: str = "") -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.type, info.linkname = kind, linkname
    return info


@pytest.mark.parametrize("info,why", [
    (_member("../evil.txt"), "'..' component"),
    (_member("ok/../../evil.txt"), "'..' component"),
    (_member("/tmp/deepfit-evil.txt"), "absolute path"),
    (_member("link", tarfile.SYMTYPE, "/etc/passwd"), "symbolic link to the absolute path"),
    (_member("sub/link", tarfile.SYMTYPE, "../../outside"), "symbolic link pointing outside"),
    (_member("hard", tarfile.LNKTYPE, "../outside"), "hard link pointing outside"),
    (_member("dev", tarfile.CHRTYPE), "device file"),
    (_member("fifo", tarfile.FIFOTYPE), "device file or FIFO"),
])
def test_unsafe_tar_members_are_refused(tmp_path, info, why):
    archive = tmp_path / "evil.tar"
    archive.write_bytes(_tar_with(info, b"pwned"))
    dest = tmp_path / "dest"
    with pytest.raises(UnsafeArchiveError, match=why):
        extract_archive(archive, dest)
    assert list(dest.iterdir()) == []  # refused before writing anything
    assert not (tmp_path / "evil.txt").exists() and not Path("/tmp/deepfit-evil.txt").exists()


def test_path_traversal_archive_refused_by_untar_data(server, tmp_path):
    base, h = server
    archive = make_tgz({"data/ok.txt": b"ok", "../../escaped.txt": b"pwned"})
    h.files["/evil.tgz"] = archive
    with pytest.raises(UnsafeArchiveError, match=r"'\.\./\.\./escaped.txt'.*'\.\.' component"):
        untar_data(f"{base}/evil.tgz", sha256=sha(archive))
    assert not (tmp_path / "escaped.txt").exists() and not (tmp_path / "cache" / "escaped.txt").exists()
    assert not (tmp_path / "cache" / "data" / "evil").exists()


def test_unsafe_zip_members_are_refused(tmp_path):
    archive = tmp_path / "evil.zip"
    with zipfile.ZipFile(archive, "w") as z:
        z.writestr("fine.txt", "ok")
        z.writestr("../evil.txt", "pwned")
    with pytest.raises(UnsafeArchiveError, match="'..' component"):
        extract_archive(archive, tmp_path / "dest")
    assert not (tmp_path / "evil.txt").exists()
    good = tmp_path / "good.zip"
    with zipfile.ZipFile(good, "w") as z:
        z.writestr("d/fine.txt", "ok")
    assert (extract_archive(good, tmp_path / "g") / "d" / "fine.txt").read_text() == "ok"


def test_url_table():
    for name in ("imdb", "imagenette_160", "imagenette_320", "imagewoof", "cifar10", "oxford_pets", "mnist_png",
                 "glove_6b", "fashion_mnist_train_images"):
        url, digest = URLS[name]
        assert url.startswith("https://") or url.startswith("http://")
        assert digest is None or len(digest) == 64
    with pytest.raises(KeyError, match="unknown dataset 'nope'"):
        untar_data("nope")
