"""Corpora from Debian packages: roff stripping, WordNet glosses, hash splits, the written files."""

from __future__ import annotations

import csv

import pytest

from deepfit.text import corpus
from deepfit.text.corpus import (
    debian_section_task,
    fortune_topic_task,
    general_corpus,
    roff_paragraphs,
    wordnet_glosses,
    write_texts,
)

ROFF = r""".\" a comment that must not appear
.TH open 2 2023-02-05 "Linux man-pages 6.03"
.SH NAME
open \- open and possibly create a file
.SH SYNOPSIS
.nf
.B #include <fcntl.h>
int open(const char *pathname, int flags);
.fi
.SH DESCRIPTION
The
.BR open ()
system call opens the file specified by
.IR pathname .
If the specified file does not exist, it may optionally be created by
\fBopen\fP().
.PP
Short one.
"""

WORDNET = (
    "  1 This software and database is being provided to you, the LICENSEE, by\n"
    "00217499 04 n 01 disaster 0 001 @ 00217014 n 0000 | an act that has disastrous consequences  \n"
    "00217593 04 n 02 kill 1 blow_up 0 002 @ 00217014 n 0000 + 00355365 v 0101 | the destruction of an enemy plane; "
    '"two kills"\n'
)


def test_roff_paragraphs_keep_prose_and_drop_markup_code_and_comments():
    paras = roff_paragraphs(ROFF)
    assert paras == ["open - open and possibly create a file",
                     "The open() system call opens the file specified by pathname. If the specified file does not "
                     "exist, it may optionally be created by open()."]


def test_wordnet_glosses_name_the_lemmas_and_keep_examples(tmp_path):
    for pos in ("noun", "verb", "adj", "adv"):
        (tmp_path / f"data.{pos}").write_text(WORDNET if pos == "noun" else "", encoding="latin-1")
    assert wordnet_glosses(tmp_path) == ["disaster: an act that has disastrous consequences",
                                         'kill, blow up: the destruction of an enemy plane; "two kills"']
    with pytest.raises(FileNotFoundError, match="wordnet-base"):
        wordnet_glosses(tmp_path / "missing")


def test_fortune_task_split_is_fixed_by_the_text_not_its_position(tmp_path):
    folder = tmp_path / "fortunes"
    folder.mkdir()
    entries = {t: [f"{t} saying number {i}\nsecond line" for i in range(40)] for t in ("love", "food", "misc")}
    for t, es in entries.items():
        (folder / t).write_text("\n%\n".join(es) + "\n%\n")
    info = fortune_topic_task(tmp_path / "a", topics=("love", "food"), fortunes_dir=folder)
    rows = list(csv.DictReader((tmp_path / "a" / "fortunes4.csv").open()))
    assert info["texts"] == len(rows) == 80 and {r["label"] for r in rows} == {"love", "food"}
    assert 0 < info["valid"] < 40
    # reversed order of the topics: the same texts are held out
    fortune_topic_task(tmp_path / "b", topics=("food", "love"), fortunes_dir=folder)
    rows_b = list(csv.DictReader((tmp_path / "b" / "fortunes4.csv").open()))
    valid = lambda rs: {r["text"] for r in rs if r["is_valid"] == "True"}  # noqa: E731
    assert valid(rows) == valid(rows_b)


def test_debian_task_labels_sections_and_keeps_unlabelled_text_apart(tmp_path, monkeypatch):
    rows = [(f"pkg{i:03d}", ["python", "games", "libs"][i % 3] if i < 200 else "rare",
             f"description number {i} of a package") for i in range(240)]
    rows.append(("zzz-dup", "games", "description number 1 of a package"))  # duplicate text: dropped
    monkeypatch.setattr(corpus, "debian_descriptions", lambda: rows)
    info = debian_section_task(tmp_path, min_packages=45, n_labelled=100, n_unlabelled=50, valid_pct=0.2)
    assert info["classes"] == ["games", "libs", "python"]
    lab = list(csv.DictReader((tmp_path / "debian_sections.csv").open()))
    assert len(lab) == 100 and {r["label"] for r in lab} <= {"games", "libs", "python"}
    unl = (tmp_path / "debian_unlabelled.txt").read_text().split("\n\n")
    assert len(unl) == 50
    assert not {r["text"] for r in lab} & {u.strip() for u in unl}


def test_general_corpus_is_blank_line_separated_and_reproducible(tmp_path):
    wn = tmp_path / "wn"
    wn.mkdir()
    for pos in ("noun", "verb", "adj", "adv"):
        (wn / f"data.{pos}").write_text(WORDNET if pos == "noun" else "", encoding="latin-1")
    folder = tmp_path / "fortunes"
    folder.mkdir()
    (folder / "love").write_text("a love quote\n%\nheld out\n")
    (folder / "art").write_text("one\n\n\ntwo lines\n%\nart two\n")
    a = general_corpus(tmp_path / "a", exclude_topics=("love",), wordnet_dir=wn, man_packages=(), fortunes_dir=folder)
    b = general_corpus(tmp_path / "b", exclude_topics=("love",), wordnet_dir=wn, man_packages=(), fortunes_dir=folder)
    assert a["sha256_16"] == b["sha256_16"] and a["sources"] == {"wordnet": 2, "manpages": 0, "fortunes": 2}
    texts = (tmp_path / "a" / "general.txt").read_text().split("\n\n")
    assert "one\ntwo lines" in [t.strip() for t in texts] and not any("held out" in t for t in texts)


def test_write_texts_never_leaves_a_blank_line_inside_a_text(tmp_path):
    path = write_texts(tmp_path / "t.txt", ["a\n\n\nb", "c"])
    assert path.read_text() == "a\nb\n\nc\n"
