"""Downloads against a local HTTP server on 127.0.0.1 that misbehaves: truncated transfers, stale partial
files, 416 answers, 206 answers from the wrong offset, files changing between requests, missing lengths."""

from __future__ import annotations

import hashlib
import json

import pytest

from deepfit.data import ChecksumError, DownloadError, download_file
from deepfit.data.download import Expected, file_digests
from tests.helpers.http_server import Resource

PAYLOAD = bytes(range(256)) * 400


def sha(b: bytes) -> str:
    return hashlib.sha256(b).hexdigest()


def md5(b: bytes) -> str:
    return hashlib.md5(b).hexdigest()


def interrupted(base, files, tmp_path, name="f.bin", data=PAYLOAD, **kw):
    """A download of `data` that stopped half-way: `.part` and its validators are left behind."""
    files[f"/{name}"] = Resource(data, truncate_once=True, **kw)
    with pytest.raises(DownloadError, match=r"incomplete after 1 attempts.*bytes are kept.*resumes"):
        download_file(f"{base}/{name}", tmp_path / name, retries=0)
    assert (tmp_path / f"{name}.part").stat().st_size == len(data) // 2
    return files[f"/{name}"]


def test_good_download_is_verified(server, tmp_path):
    base, files = server
    files["/data.bin"] = Resource(PAYLOAD)
    path = download_file(f"{base}/data.bin", tmp_path / "data.bin", sha256=sha(PAYLOAD), size=len(PAYLOAD))
    assert path.read_bytes() == PAYLOAD
    assert sorted(p.name for p in tmp_path.iterdir()) == ["data.bin"]  # no .part or .part.json left
    download_file(f"{base}/data.bin", tmp_path / "data.bin", sha256=sha(PAYLOAD))  # present and valid: no request
    assert len(files["/data.bin"].log) == 1


def test_wrong_checksum_deletes_and_raises(server, tmp_path):
    base, files = server
    files["/data.bin"] = Resource(b"x" * 1000)
    with pytest.raises(ChecksumError, match=r"data.bin: expected sha256 0{64}, got " + sha(b"x" * 1000)):
        download_file(f"{base}/data.bin", tmp_path / "data.bin", sha256="0" * 64)
    assert list(tmp_path.iterdir()) == []  # neither the file nor a .part is left to be used


def test_md5_is_supported(server, tmp_path):
    base, files = server
    files["/m.bin"] = Resource(PAYLOAD)
    with pytest.raises(ChecksumError, match=r"expected md5 f{32}, got " + md5(PAYLOAD)):
        download_file(f"{base}/m.bin", tmp_path / "m.bin", md5="f" * 32)
    assert download_file(f"{base}/m.bin", tmp_path / "m.bin", md5=md5(PAYLOAD)).read_bytes() == PAYLOAD
    assert file_digests(tmp_path / "m.bin", ("md5", "sha256")) == {"md5": md5(PAYLOAD), "sha256": sha(PAYLOAD)}
    with pytest.raises(ValueError, match="md5='abc' is not a 32-digit"):
        Expected(md5="abc")


def test_truncated_transfer_is_resumed_with_if_range(server, tmp_path):
    base, files = server
    files["/big.bin"] = Resource(PAYLOAD, truncate_once=True)
    path = download_file(f"{base}/big.bin", tmp_path / "big.bin", sha256=sha(PAYLOAD))
    assert path.read_bytes() == PAYLOAD
    assert files["/big.bin"].log == [{"range": None, "if_range": None},
                                     {"range": f"bytes={len(PAYLOAD) // 2}-", "if_range": '"v1"'}]


def test_interrupted_download_is_resumed_by_the_next_call(server, tmp_path):
    base, files = server
    res = interrupted(base, files, tmp_path)
    meta = json.loads((tmp_path / "f.bin.part.json").read_text())
    assert meta["etag"] == '"v1"' and meta["total"] == len(PAYLOAD)
    assert download_file(f"{base}/f.bin", tmp_path / "f.bin").read_bytes() == PAYLOAD
    assert res.log[-1] == {"range": f"bytes={len(PAYLOAD) // 2}-", "if_range": '"v1"'}
    assert sorted(p.name for p in tmp_path.iterdir()) == ["f.bin"]


def test_stale_part_without_validators_is_discarded(server, tmp_path):
    base, files = server
    files["/f.bin"] = Resource(PAYLOAD)
    (tmp_path / "f.bin.part").write_bytes(b"garbage from somewhere" * 10)  # no .part.json: cannot be validated
    assert download_file(f"{base}/f.bin", tmp_path / "f.bin").read_bytes() == PAYLOAD
    assert files["/f.bin"].log == [{"range": None, "if_range": None}]


def test_416_answer_discards_the_partial_file(server, tmp_path):
    base, files = server
    res = interrupted(base, files, tmp_path)
    res.always_416 = True
    assert download_file(f"{base}/f.bin", tmp_path / "f.bin").read_bytes() == PAYLOAD
    assert [e["range"] is not None for e in res.log] == [False, True, False]


def test_206_from_the_wrong_offset_is_not_appended(server, tmp_path):
    base, files = server
    res = interrupted(base, files, tmp_path)
    res.range_from_zero = True
    assert download_file(f"{base}/f.bin", tmp_path / "f.bin").read_bytes() == PAYLOAD
    assert [e["range"] is not None for e in res.log] == [False, True, False]


@pytest.mark.parametrize("validator", ["etag", "last_modified"])
def test_file_changed_between_requests_is_downloaded_whole(server, tmp_path, validator):
    base, files = server
    kw = {"etag": None, "last_modified": "Mon, 01 Jan 2024 00:00:00 GMT"} if validator == "last_modified" else {}
    res = interrupted(base, files, tmp_path, **kw)
    new = bytes(reversed(PAYLOAD))  # same size, other bytes
    res.data = new
    if validator == "etag":
        res.etag = '"v2"'
    else:
        res.last_modified = "Tue, 02 Jan 2024 00:00:00 GMT"
    assert download_file(f"{base}/f.bin", tmp_path / "f.bin").read_bytes() == new  # not old[:half] + new[half:]
    assert res.log[-1]["if_range"] is not None


def test_changed_file_is_noticed_when_the_server_ignores_if_range(server, tmp_path):
    base, files = server
    res = interrupted(base, files, tmp_path)
    new = bytes(reversed(PAYLOAD))
    res.data, res.etag, res.ignore_if_range = new, '"v2"', True  # 206 of the new file, with its new ETag
    assert download_file(f"{base}/f.bin", tmp_path / "f.bin").read_bytes() == new
    assert [e["range"] is not None for e in res.log] == [False, True, False]


def test_server_without_validators_restarts_instead_of_resuming(server, tmp_path):
    base, files = server
    files["/f.bin"] = Resource(PAYLOAD, etag=None, truncate_once=True)
    assert download_file(f"{base}/f.bin", tmp_path / "f.bin").read_bytes() == PAYLOAD
    assert [e["range"] for e in files["/f.bin"].log] == [None, None]  # no unvalidated Range request


def test_early_close_without_content_length_is_an_error(server, tmp_path):
    base, files = server
    files["/f.bin"] = Resource(PAYLOAD, send_length=False, truncate_once=True)
    with pytest.raises(DownloadError, match=r"no Content-Length.*pass size=, md5= or sha256="):
        download_file(f"{base}/f.bin", tmp_path / "f.bin")
    assert list(tmp_path.iterdir()) == []


def test_early_close_without_content_length_is_completed_when_the_size_is_known(server, tmp_path):
    base, files = server
    files["/f.bin"] = Resource(PAYLOAD, send_length=False, truncate_once=True)
    assert download_file(f"{base}/f.bin", tmp_path / "f.bin", size=len(PAYLOAD)).read_bytes() == PAYLOAD
    assert files["/f.bin"].log[-1]["range"] == f"bytes={len(PAYLOAD) // 2}-"


def test_announced_size_differing_from_the_known_size_is_refused(server, tmp_path):
    base, files = server
    files["/f.bin"] = Resource(PAYLOAD)
    with pytest.raises(ChecksumError, match=rf"expected 1000 bytes, the server announces {len(PAYLOAD)}"):
        download_file(f"{base}/f.bin", tmp_path / "f.bin", size=1000)
    assert list(tmp_path.iterdir()) == []


def test_existing_file_of_the_wrong_size_is_downloaded_again(server, tmp_path):
    base, files = server
    files["/f.bin"] = Resource(PAYLOAD)
    (tmp_path / "f.bin").write_bytes(PAYLOAD[:100])
    assert download_file(f"{base}/f.bin", tmp_path / "f.bin", size=len(PAYLOAD)).read_bytes() == PAYLOAD


def test_complete_part_left_before_the_rename_needs_no_request(server, tmp_path):
    base, files = server
    res = interrupted(base, files, tmp_path)
    with open(tmp_path / "f.bin.part", "ab") as f:  # as if the process died after the last byte
        f.write(PAYLOAD[len(PAYLOAD) // 2:])
    n = len(res.log)
    assert download_file(f"{base}/f.bin", tmp_path / "f.bin", sha256=sha(PAYLOAD)).read_bytes() == PAYLOAD
    assert len(res.log) == n


def test_incomplete_after_retries_keeps_part(server, tmp_path):
    base, files = server
    interrupted(base, files, tmp_path, name="g.bin", data=b"z" * 1000)
    download_file(f"{base}/g.bin", tmp_path / "g.bin")  # the next call finishes it
    assert (tmp_path / "g.bin").read_bytes() == b"z" * 1000


def test_http_error_is_named(server, tmp_path):
    base, _ = server
    with pytest.raises(DownloadError, match=r"cannot download .*/missing.tgz: HTTP 404"):
        download_file(f"{base}/missing.tgz", tmp_path / "m.tgz")
