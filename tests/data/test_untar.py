"""`untar_data` end to end against a local HTTP server: verified download, safe extraction (the PATH_MAX
symlink chain of issue 17), size limits, and folders verified against the archive they came from."""

from __future__ import annotations

import hashlib
import io
import json
import tarfile

import pytest

from deepfit.data import ChecksumError, UnsafeArchiveError, download_data, untar_data
from deepfit.data.archive import ArchiveTooLargeError
from deepfit.data.untar import URLS, RemoteFile
from tests.helpers.archives import pathmax_escape_tar, tar_bytes
from tests.helpers.http_server import Resource


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
    base, files = server
    archive = make_tgz({"pets/a.txt": b"alpha", "pets/sub/b.txt": b"beta"})
    files["/pets.tgz"] = Resource(archive)
    folder = untar_data(f"{base}/pets.tgz", sha256=sha(archive))
    assert folder == tmp_path / "cache" / "data" / "pets"
    assert (folder / "a.txt").read_bytes() == b"alpha" and (folder / "sub" / "b.txt").read_bytes() == b"beta"
    assert (tmp_path / "cache" / "archives" / "pets.tgz").read_bytes() == archive
    stamp = json.loads((tmp_path / "cache" / "data" / ".pets.source.json").read_text())
    assert stamp == {"url": f"{base}/pets.tgz", "size": len(archive), "sha256": sha(archive)}
    n = len(files["/pets.tgz"].log)
    assert untar_data(f"{base}/pets.tgz", sha256=sha(archive)) == folder  # cached and verified: no new request
    assert len(files["/pets.tgz"].log) == n
    leftovers = [p.name for p in (tmp_path / "cache" / "data").iterdir() if p.name.startswith(".")]
    assert leftovers == [".pets.source.json"]


def test_pathmax_symlink_chain_cannot_write_outside(server, tmp_path):
    base, files = server
    archive = pathmax_escape_tar()
    files["/evil.tar"] = Resource(archive)
    with pytest.raises(UnsafeArchiveError, match="extracted through it"):
        untar_data(f"{base}/evil.tar", sha256=sha(archive))
    # extraction happens in cache/data/.evil.extracting-*/: three levels above it is tmp_path
    assert not any(p.name == "FILE" for p in tmp_path.rglob("*"))
    assert [p.name for p in (tmp_path / "cache" / "data").iterdir()] == []


def test_path_traversal_archive_refused(server, tmp_path):
    base, files = server
    archive = make_tgz({"data/ok.txt": b"ok", "../../escaped.txt": b"pwned"})
    files["/evil.tgz"] = Resource(archive)
    with pytest.raises(UnsafeArchiveError, match=r"'\.\./\.\./escaped.txt'.*'\.\.' component"):
        untar_data(f"{base}/evil.tgz", sha256=sha(archive))
    assert not (tmp_path / "escaped.txt").exists() and not (tmp_path / "cache" / "escaped.txt").exists()
    assert not (tmp_path / "cache" / "data" / "evil").exists()


def test_link_leaving_the_unwrapped_folder_is_refused(server, tmp_path):
    base, files = server
    archive = tar_bytes([("top/f", tarfile.REGTYPE, b"x"), ("top/data", tarfile.SYMTYPE, "..")])
    files["/t.tar"] = Resource(archive)  # top/ becomes cache/data/t, where '..' is cache/data
    with pytest.raises(UnsafeArchiveError, match="'top/data'.*pointing outside"):
        untar_data(f"{base}/t.tar", sha256=sha(archive))


def test_size_limit_is_passed_through(server, tmp_path):
    base, files = server
    archive = make_tgz({"d/a.bin": b"a" * 3000})
    files["/big.tgz"] = Resource(archive)
    with pytest.raises(ArchiveTooLargeError, match=r"big.tgz: refusing to extract.*more than 1000 bytes"):
        untar_data(f"{base}/big.tgz", sha256=sha(archive), max_size=1000)
    assert not (tmp_path / "cache" / "data" / "big").exists()
    assert (untar_data(f"{base}/big.tgz", sha256=sha(archive), max_size=4000) / "a.bin").stat().st_size == 3000


def test_extracted_folder_is_verified_against_the_requested_checksum(server, tmp_path):
    base, files = server
    old, new = make_tgz({"d/v.txt": b"old"}), make_tgz({"d/v.txt": b"new"})
    files["/d.tgz"] = Resource(old)
    folder = untar_data(f"{base}/d.tgz")  # no checksum: the stamp records the archive's sha256
    assert (folder / "v.txt").read_bytes() == b"old"
    assert untar_data(f"{base}/d.tgz", sha256=sha(old)) == folder
    files["/d.tgz"] = Resource(new, etag='"v2"')
    assert (untar_data(f"{base}/d.tgz", sha256=sha(new)) / "v.txt").read_bytes() == b"new"  # not the old folder
    with pytest.raises(ChecksumError, match="expected sha256 0{64}"):
        untar_data(f"{base}/d.tgz", sha256="0" * 64)
    assert (folder / "v.txt").read_bytes() == b"new"  # a failed check leaves the verified folder alone


def test_folder_without_a_stamp_is_not_trusted(server, tmp_path):
    base, files = server
    archive = make_tgz({"d/v.txt": b"real"})
    files["/d.tgz"] = Resource(archive)
    folder = tmp_path / "cache" / "data" / "d"
    folder.mkdir(parents=True)
    (folder / "v.txt").write_bytes(b"planted")
    with pytest.raises(FileExistsError, match=r"data/d exists but has no record.*force=True"):
        untar_data(f"{base}/d.tgz", sha256=sha(archive))
    assert (untar_data(f"{base}/d.tgz", sha256=sha(archive), force=True) / "v.txt").read_bytes() == b"real"


def test_a_dataset_name_brings_its_known_size_and_md5(server, tmp_path, monkeypatch):
    base, files = server
    archive = make_tgz({"tiny/a.txt": b"a"})
    files["/tiny.tgz"] = Resource(archive)
    monkeypatch.setitem(URLS, "tiny", RemoteFile(f"{base}/tiny.tgz", len(archive), "0" * 32))
    with pytest.raises(ChecksumError, match="expected md5 0{32}"):
        untar_data("tiny")
    with pytest.raises(ChecksumError, match="expected md5 0{32}"):
        download_data(f"{base}/tiny.tgz")  # the table's entry is found by URL too
    monkeypatch.setitem(URLS, "tiny", RemoteFile(f"{base}/tiny.tgz", len(archive), hashlib.md5(archive).hexdigest()))
    assert (untar_data("tiny") / "a.txt").read_bytes() == b"a"
    assert (untar_data("tiny", sha256=sha(archive)) / "a.txt").read_bytes() == b"a"  # re-verified with sha256


def test_every_known_dataset_has_a_size_or_checksum():
    for name, entry in URLS.items():
        assert entry.url.startswith(("https://", "http://")), name
        assert entry.size is not None or entry.md5 is not None or entry.sha256 is not None, name
        assert entry.md5 is None or len(entry.md5) == 32
        assert entry.sha256 is None or len(entry.sha256) == 64
    for name in ("imdb", "imagenette_160", "imagenette_320", "imagewoof", "cifar10", "oxford_pets", "mnist_png",
                 "glove_6b", "fashion_mnist_train_images"):
        assert name in URLS
    assert URLS["imagenette_160"] == RemoteFile("https://s3.amazonaws.com/fast-ai-imageclas/imagenette2-160.tgz",
                                                99003388, "c475f8f7617a200ba35b9facc48443c3")
    with pytest.raises(KeyError, match="unknown dataset 'nope'"):
        untar_data("nope")
