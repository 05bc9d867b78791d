"""deepfit.progress: a tqdm bar in a terminal; in a log no carriage return, a line per `log_every` seconds
and one at the end (fake clock); nothing when off, on ranks other than 0, or for steps under a second."""

import io

import pytest

from deepfit.progress import Progress, format_amount, is_terminal, progress


class FakeTTY(io.StringIO):
    def isatty(self):
        return True


class FakeClock:
    def __init__(self):
        self.now = 0.0

    def __call__(self):
        return self.now


def run(n: int, dt: float, **kwargs) -> tuple[str, Progress]:
    clock, out = FakeClock(), io.StringIO()
    bar = Progress(n, "tokenizing", "texts", stream=out, clock=clock, **kwargs)
    with bar:
        for _ in range(n):
            clock.now += dt
            bar.update(1, info=lambda: "12 tokens")
    return out.getvalue(), bar


def test_log_lines_at_most_every_30_seconds_then_one_at_the_end(monkeypatch):
    monkeypatch.delenv("RANK", raising=False)
    text, bar = run(1000, 0.1)  # 100 s
    assert "\r" not in text and bar.mode == "log"
    lines = text.splitlines()
    assert len(lines) == 4 and bar.lines == 4  # at 30, 60, 90 s, and the end
    assert lines[0] == "tokenizing: texts 300/1000 (30%), 12 tokens, 10.0 texts/s, 00:30 elapsed, eta 01:10"
    assert lines[-1] == "tokenizing: 1000 texts in 01:40, 12 tokens"


def test_short_steps_are_silent_in_a_log(monkeypatch):
    monkeypatch.delenv("RANK", raising=False)
    text, _ = run(10, 0.05)  # 0.5 s
    assert text == ""


@pytest.mark.parametrize("kwargs,env", [({"show": False}, None), ({}, "1")])
def test_off_and_other_ranks_print_nothing(monkeypatch, kwargs, env):
    if env is None:
        monkeypatch.delenv("RANK", raising=False)
    else:
        monkeypatch.setenv("RANK", env)
    text, bar = run(1000, 0.1, **kwargs)
    assert text == "" and bar.mode == "off"


def test_terminal_gets_a_live_bar(monkeypatch):
    monkeypatch.delenv("RANK", raising=False)
    out = FakeTTY()
    assert is_terminal(out) and not is_terminal(io.StringIO())
    items = list(progress(range(20), desc="extracting", unit="files", stream=out, refresh=0.0))
    assert items == list(range(20))
    text = out.getvalue()
    assert "\rextracting:" in text and "20/20" in text


def test_byte_amounts_are_scaled(monkeypatch):
    monkeypatch.delenv("RANK", raising=False)
    assert format_amount(12_345_678, "B", True) == "12.3 MB" and format_amount(999, "B", True) == "999 B"
    clock, out = FakeClock(), io.StringIO()
    with Progress(50_000_000, "downloading x.tgz", "B", unit_scale=True, stream=out, clock=clock) as bar:
        for _ in range(50):
            clock.now += 1.0
            bar.update(1_000_000)
    first = out.getvalue().splitlines()[0]
    assert first.startswith("downloading x.tgz: 30.0 MB/50.0 MB (60%)") and "1.0 MB/s" in first


def test_unknown_total_has_no_eta(monkeypatch):
    monkeypatch.delenv("RANK", raising=False)
    clock, out = FakeClock(), io.StringIO()
    bar = Progress(None, "reading", "items", stream=out, clock=clock)
    for _ in range(40):
        clock.now += 1.0
        bar.update(1)
    bar.close()
    lines = out.getvalue().splitlines()
    assert lines[0].startswith("reading: items 30, ") and "eta" not in lines[0]


# ---------------------------------------------------------------------------------------------- every long step
def fake_terminal(monkeypatch) -> FakeTTY:
    """stderr replaced by a fake terminal, where each step should draw its bar (called in the test body:
    pytest's capture sets sys.stderr again when the test's call phase starts)."""
    monkeypatch.delenv("RANK", raising=False)
    tty = FakeTTY()
    monkeypatch.setattr("sys.stderr", tty)
    return tty


def test_tokenizing_and_vocabulary_building_draw_bars(monkeypatch):
    terminal = fake_terminal(monkeypatch)
    from deepfit.text.tokenize import Tokenizer
    from deepfit.text.vocab import Vocab

    tokens = Tokenizer.chars(chunksize=2)(["ab", "cd", "ef", "gh", "ij"])
    assert tokens[0] == ["a", "b"] and "\rtokenizing:" in terminal.getvalue()
    vocab = Vocab.build(tokens, min_freq=1)
    assert "a" in vocab and "\rbuilding vocabulary:" in terminal.getvalue()
    before = terminal.getvalue()
    Tokenizer.chars(progress=False)(["ab"])
    Vocab.build(tokens, progress=False)
    assert terminal.getvalue() == before


def test_lr_find_draws_a_bar(monkeypatch, tiny_dls):
    terminal = fake_terminal(monkeypatch)
    from torch import nn

    from deepfit.learner import Learner

    learn = Learner(nn.Linear(4, 3), tiny_dls)
    learn.lr_find(num_it=10)
    text = terminal.getvalue()
    assert "\rlr_find:" in text and "/10 " in text


def test_extraction_draws_a_bar(monkeypatch, tmp_path):
    terminal = fake_terminal(monkeypatch)
    import tarfile

    from deepfit.data.archive import extract_archive
    from tests.helpers.archives import tar_bytes

    archive = tmp_path / "a.tar"
    archive.write_bytes(tar_bytes([("d/x.txt", tarfile.REGTYPE, b"x" * 10), ("d/y.txt", tarfile.REGTYPE, b"y")]))
    extract_archive(archive, tmp_path / "out")
    assert (tmp_path / "out" / "d" / "y.txt").read_bytes() == b"y"
    assert "\rextracting a.tar:" in terminal.getvalue()


def test_download_draws_a_bar(monkeypatch, tmp_path):
    terminal = fake_terminal(monkeypatch)
    import threading
    from http.server import ThreadingHTTPServer

    from deepfit.data.download import download_file
    from tests.helpers.http_server import Handler, Resource

    Handler.resources = {"/f.bin": Resource(b"z" * 5000)}
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()
    try:
        path = download_file(f"http://127.0.0.1:{httpd.server_address[1]}/f.bin", tmp_path / "f.bin", size=5000)
    finally:
        httpd.shutdown()
        httpd.server_close()
    assert path.stat().st_size == 5000 and "\rdownloading f.bin:" in terminal.getvalue()


def test_a_finished_bar_leaves_its_summary_line(monkeypatch):
    monkeypatch.delenv("RANK", raising=False)
    clock, out = FakeClock(), FakeTTY()
    with Progress(100, "building vocabulary", "texts", stream=out, clock=clock, refresh=0.0) as bar:
        for _ in range(100):
            clock.now += 0.05
            bar.update(1, info="7 distinct tokens")
    text = out.getvalue()
    assert text.endswith("building vocabulary: 100 texts in 00:05, 7 distinct tokens\n")
    assert "\rbuilding vocabulary:" in text
