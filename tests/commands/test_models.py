"""`deepfit models` lists exactly the names each command's `--arch` accepts."""

from __future__ import annotations

import pytest

from deepfit.commands.catalog import ARCH_COMMANDS, CLASSIFIER_ARCHS, LM_ARCHS
from deepfit.models.registry import arch_names, spec
from tests.helpers.cli import run

REGISTERED = sorted({n for task in ("vision", "lm", "classifier", "encoder", "transfer", "next_token")
                     for n in arch_names(task)})
CANDIDATES = sorted({*REGISTERED, *LM_ARCHS, *CLASSIFIER_ARCHS, "resnet9000"})

# command line (before --arch) that fails on its data only after --arch is accepted; `{tmp}`: a tmp folder
PROBES = {
    "train-vision": (["train-vision", "{tmp}/empty"], "train-vision"),
    "lr-find": (["lr-find", "{tmp}/empty"], "train-vision"),
    "train-lm": (["train-lm", "{tmp}/nope.txt"], "train-lm"),
    "lr-find --task lm": (["lr-find", "--task", "lm", "{tmp}/nope.txt"], "train-lm"),
    "train-classifier": (["train-classifier", "{tmp}/nope"], "train-classifier"),
}


def listed(capsys, command: str) -> set[str]:
    rc, out, err = run(capsys, "models", command)
    assert rc == 0, err
    return set(out.split())


@pytest.mark.parametrize("probe", sorted(PROBES))
def test_models_lists_exactly_what_arch_accepts(probe, tmp_path, capsys):
    (tmp_path / "empty").mkdir()
    argv, command = PROBES[probe]
    names = listed(capsys, command)
    assert names, command
    accepted = set()
    for name in CANDIDATES:
        rc, _, err = run(capsys, *[a.format(tmp=tmp_path) for a in argv], "--arch", name)
        assert rc == 2, (probe, name, err)
        if "--arch" not in err.splitlines()[0]:  # refused for its data (missing), not for its --arch
            accepted.add(name)
    assert accepted == names


def test_every_listing_names_registered_models_of_its_task(capsys):
    assert listed(capsys, "train-vision") == set(arch_names("vision"))
    for name, arch in LM_ARCHS.items():
        assert spec(arch).task == "lm", name
    for name, arch in CLASSIFIER_ARCHS.items():
        assert spec(arch).task == "classifier", name
    assert "char_seq_lstm" not in listed(capsys, "train-lm")  # a registered name, not a train-lm --arch value


def test_full_listing_has_a_section_per_command(capsys):
    rc, out, _ = run(capsys, "models")
    assert rc == 0
    headers = [line for line in out.splitlines() if line and not line.startswith(" ")]
    assert [h.split()[0] for h in headers] == list(ARCH_COMMANDS)
    rows = [line.split()[0] for line in out.splitlines() if line.startswith("  ")]
    assert sorted(rows) == sorted(n for c in ARCH_COMMANDS for n in listed(capsys, c))
