import pytest
import torch

from deepfit.data.multilabel import MultiCategoryProcessor, labels_from_columns, multi_hot, split_labels


def test_split_labels():
    assert split_labels("cat dog cat") == ["cat", "dog"]
    assert split_labels("cat;dog", ";") == ["cat", "dog"]
    assert split_labels("  ") == [] and split_labels(None) == []
    assert split_labels(["a", "b"]) == ["a", "b"]


def test_labels_from_columns():
    row = {"A": "1", "B": "0", "C": "true", "D": ""}
    assert labels_from_columns(row, ["A", "B", "C", "D"]) == ["A", "C"]
    with pytest.raises(ValueError, match="f.csv:3: column 'A' holds '2'"):
        labels_from_columns({"A": "2"}, ["A"], "f.csv:3")


def test_multi_hot():
    y = multi_hot([["b"], ["a", "c"], []], ["a", "b", "c"])
    assert y.dtype == torch.float32 and y.tolist() == [[0, 1, 0], [1, 0, 1], [0, 0, 0]]
    with pytest.raises(KeyError, match="item 0: label 'z'"):
        multi_hot([["z"]], ["a"])


def test_processor_round_trip(tmp_path):
    proc = MultiCategoryProcessor().fit([["dog", "cat"], ["bird"], []])
    assert proc.vocab == ["bird", "cat", "dog"] and len(proc) == 3
    y = proc.encode([["cat"], ["dog", "bird"]])
    assert y.tolist() == [[0, 1, 0], [1, 0, 1]]
    assert proc.decode(y) == [["cat"], ["bird", "dog"]]
    assert proc.decode(torch.tensor([0.7, 0.2, 0.55])) == ["bird", "dog"]
    assert proc.decode(torch.tensor([0.7, 0.2, 0.55]), thresh=0.6) == ["bird"]
    loaded = MultiCategoryProcessor.load(proc.save(tmp_path / "v.json"))
    assert loaded.vocab == proc.vocab
    with pytest.raises(ValueError, match="2 columns but there are 3 classes"):
        proc.decode(torch.zeros(2))
    with pytest.raises(ValueError, match="no labels"):
        MultiCategoryProcessor().fit([[], []])
