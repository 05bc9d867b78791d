import pytest
import torch

from deepfit.text.datasets import (
    TextDecodeError,
    TextItems,
    fortune_topics,
    fortunes_texts,
    imdb_texts,
    read_fortunes,
    read_text,
    texts_from_csv,
    texts_from_folder,
)
from tests.helpers.data import FORTUNES_DIR, requires_fortunes


def write(path, text, encoding="utf-8"):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(text.encode(encoding) if isinstance(text, str) else text)


def make_imdb(root):
    write(root / "train/pos/0_9.txt", "Great film.<br />Loved it")
    write(root / "train/pos/1_8.txt", "Fine")
    write(root / "train/neg/2_1.txt", "Awful")
    write(root / "test/pos/0_10.txt", "Superb")
    write(root / "test/neg/0_2.txt", "Bad")
    write(root / "train/unsup/0_0.txt", "No label here")
    write(root / "train/pos/notes.md", "not a review")


def test_folder_and_imdb_layout(tmp_path):
    make_imdb(tmp_path / "aclImdb")
    root = tmp_path / "aclImdb"
    train = imdb_texts(root, "train")
    assert len(train) == 3 and train.classes == ["neg", "pos"]
    assert train.labels == ["neg", "pos", "pos"] and train.texts[1] == "Great film.<br />Loved it"
    assert train.label_ids() == [0, 1, 1]
    test = imdb_texts(root, "test")
    assert sorted(zip(test.texts, test.labels)) == [("Bad", "neg"), ("Superb", "pos")]
    unsup = imdb_texts(root, "unsup")
    assert unsup.texts == ["No label here"] and unsup.labels == [None]
    every = texts_from_folder(root / "train")  # all sub-folders are classes
    assert every.classes == ["neg", "pos", "unsup"]
    with pytest.raises(ValueError, match="split"):
        imdb_texts(root, "dev")
    with pytest.raises(FileNotFoundError, match="nope"):
        texts_from_folder(root / "train", classes=["nope"])


def test_non_utf8_names_file_and_offset(tmp_path):
    bad = tmp_path / "cls" / "bad.txt"
    write(bad, b"caf\xe9 ok")
    with pytest.raises(TextDecodeError, match=r"bad\.txt.*byte offset 3"):
        read_text(bad)
    with pytest.raises(TextDecodeError, match="bad.txt"):
        texts_from_folder(tmp_path)
    write(tmp_path / "bom.txt", "\ufeffhello")
    assert read_text(tmp_path / "bom.txt") == "hello"


def test_csv(tmp_path):
    write(tmp_path / "d.csv", 'text,label\n"Hello, world",pos\n"multi\nline",neg\n')
    items = texts_from_csv(tmp_path / "d.csv")
    assert items.texts == ["Hello, world", "multi\nline"] and items.labels == ["pos", "neg"]
    assert texts_from_csv(tmp_path / "d.csv", label_col=None).labels == [None, None]
    with pytest.raises(KeyError, match="review"):
        texts_from_csv(tmp_path / "d.csv", text_col="review")


def test_fortune_format(tmp_path):
    write(tmp_path / "jokes", "First one\nsecond line\n%\nSecond entry\n%\n\n%\nLast\n")
    write(tmp_path / "jokes.dat", b"\x00\x01")
    write(tmp_path / "jokes.u8", "ignored")
    write(tmp_path / "quotes", "Only\n")
    assert read_fortunes(tmp_path / "jokes") == ["First one\nsecond line", "Second entry", "Last"]
    assert fortune_topics(tmp_path) == ["jokes", "quotes"]
    items = fortunes_texts(tmp_path)
    assert items.labels == ["jokes"] * 3 + ["quotes"] and items.texts[-1] == "Only"
    assert isinstance(items + items, TextItems) and len(items + items) == 8


@requires_fortunes
def test_real_fortunes():
    items = fortunes_texts(FORTUNES_DIR, topics=["computers", "science"])
    assert set(items.labels) == {"computers", "science"} and len(items) > 500
    assert not any(t.strip() == "%" or "\n%\n" in t for t in items.texts)
    assert len(fortune_topics()) > 30


def test_csv_one_zero_one_column_per_label(tmp_path):
    # file 001's news CSV: id, content, then one 0/1 column per label
    write(tmp_path / "news.csv", "id,content,Business,SciTech,Sports,World\n"
          "1,Stocks rally as chip makers report,1,1,0,0\n2,Cup final tonight,0,0,1,0\n3,Nothing here,0,0,0,0\n")
    cols = ["Business", "SciTech", "Sports", "World"]
    items = texts_from_csv(tmp_path / "news.csv", text_col="content", label_col=cols)
    assert items.multi_label and items.classes == cols  # the columns, in order, even "World" that no item has
    assert items.labels == [["Business", "SciTech"], ["Sports"], []]
    assert items.multi_hot().tolist() == [[1, 1, 0, 0], [0, 0, 1, 0], [0, 0, 0, 0]]
    with pytest.raises(ValueError, match="label_ids"):
        items.label_ids()
    write(tmp_path / "bad.csv", "content,A,B\nx,1,maybe\n")
    with pytest.raises(ValueError, match=r"bad.csv:2: column 'B' holds 'maybe'"):
        texts_from_csv(tmp_path / "bad.csv", text_col="content", label_col=["A", "B"])
    with pytest.raises(KeyError, match="'C'"):
        texts_from_csv(tmp_path / "bad.csv", text_col="content", label_col=["A", "C"])


def test_csv_space_separated_labels(tmp_path):
    write(tmp_path / "tags.csv", "text,tags\nfunny and wise,humor wisdom\njust funny,humor\nno tag,\n")
    items = texts_from_csv(tmp_path / "tags.csv", label_col="tags", label_delim=" ")
    assert items.labels == [["humor", "wisdom"], ["humor"], []]
    assert items.classes == ["humor", "wisdom"]
    y = items.multi_hot()
    assert y.dtype == torch.float32 and y.tolist() == [[1, 1], [1, 0], [0, 0]]
    assert items.multi_hot(["wisdom", "humor", "love"]).tolist() == [[1, 1, 0], [0, 1, 0], [0, 0, 0]]
    # single-label reading of the same file is unchanged
    assert texts_from_csv(tmp_path / "tags.csv", label_col="tags").labels == ["humor wisdom", "humor", ""]
