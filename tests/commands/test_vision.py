"""`deepfit train-vision`, `lr-find` and the commands that use a vision run (predict, summary, export)."""

from __future__ import annotations

import importlib.util
import json

import pytest
import torch

from deepfit.commands.vision_defaults import DEMO_RECIPE
from deepfit.learner.export import load_learner
from deepfit.recipes import get_recipe
from deepfit.run import RunDir
from tests.helpers.cli import TINY, kill_after_first_epoch, metrics_rows, run
from tests.helpers.data import requires_fmnist

VISION_FILES = ["config.json", "metrics.csv", "metrics.json", "models/best.pth", "models/last.pt",
                "export/learner.json", "export/model.safetensors", "losses.png", "lr_schedule.png",
                "confusion_matrix.png", "top_losses.png", "lr_find.png"]


@requires_fmnist
def test_train_vision_writes_every_file(vision_run):
    for name in VISION_FILES:
        assert (vision_run / name).is_file(), name
    if importlib.util.find_spec("tensorboard") is not None:  # an optional extra
        assert any((vision_run / "tensorboard").iterdir())
    assert not (vision_run / ".lock").exists()  # released at the end
    config = json.loads((vision_run / "config.json").read_text())
    assert config["command"] == "train-vision"
    assert config["options"]["mixup"] == 0.4 and config["options"]["lr"] == "auto"
    assert config["resolved"]["lr"] > 0 and len(config["resolved"]["classes"]) == 10
    assert config["rerun"].startswith("deepfit train-vision ")
    # 28-px images without --recipe: the demo recipe's settings, written out as options
    demo = get_recipe(DEMO_RECIPE)
    assert config["options"]["recipe"] == DEMO_RECIPE and config["options"]["arch"] == demo.arch
    assert config["options"]["augment"] == "standard"  # given on the command line: it overrides the recipe's
    assert config["options"]["channels_last"] == demo.channels_last
    assert config["resolved"]["settings"]["arch_kwargs"] == demo.arch_kwargs
    # threads and precision: how many / which, and why
    assert config["resolved"]["threads"]["threads"] >= 1 and config["resolved"]["threads"]["reason"]
    precision = config["resolved"]["precision"]
    assert precision["precision"] in ("fp32", "bf16") and precision["reason"]
    assert [r["epoch"] for r in metrics_rows(vision_run)] == ["0"]
    results = json.loads((vision_run / "metrics.json").read_text())
    assert 0 <= results["valid_best"]["accuracy"] <= 1 and 0 <= results["valid_tta_accuracy"] <= 1
    assert results["tta_passes"] == 4  # --tta alone
    assert results["best"]["epoch"] == results["last"]["epoch"] == 0 and results["best"]["exported"]
    assert (results["best"]["monitor"], results["best"]["mode"]) == ("accuracy", "max")


@requires_fmnist
def test_config_reruns_a_run_with_the_same_results(vision_run, tmp_path, capsys):
    """`--config run/config.json` repeats the run (lr_find, MixUp, augmentation included): the same numbers."""
    rc, out, err = run(capsys, "train-vision", "--config", vision_run / "config.json", "--out", tmp_path,
                       "--name", "again")
    assert rc == 0, err
    again = tmp_path / "again"
    first, second = (json.loads((d / "config.json").read_text()) for d in (vision_run, again))
    assert second["resolved"]["lr"] == pytest.approx(first["resolved"]["lr"], rel=1e-6)
    assert {k: v for k, v in second["options"].items() if k not in ("out", "name")} == \
        {k: v for k, v in first["options"].items() if k not in ("out", "name")}
    a, b = (json.loads((d / "metrics.json").read_text()) for d in (vision_run, again))
    for key in ("train_loss", "valid_loss", "accuracy"):
        assert b["history"][0][key] == pytest.approx(a["history"][0][key], rel=1e-5), key
    assert b["valid_best"] == pytest.approx(a["valid_best"], rel=1e-5)


@requires_fmnist
def test_predict_matches_python_api(vision_run, png_dir, capsys):
    images = sorted((png_dir / "valid").rglob("*.png"))[:3]
    rc, out, err = run(capsys, "predict", vision_run, *images, "--json")
    assert rc == 0, err
    results = json.loads(out)
    learn = load_learner(vision_run / "export")
    for img, res in zip(images, results):
        label, idx, probs = learn.predict(img)
        assert res["prediction"] == label and res["index"] == idx
        assert res["probability"] == pytest.approx(float(probs[idx]), abs=1e-6)
    rc, out, _ = run(capsys, "predict", vision_run, images[0])
    assert rc == 0 and out.split("\t")[1] == results[0]["prediction"]


@requires_fmnist
@pytest.mark.filterwarnings("ignore:`torch.jit.load` is deprecated:DeprecationWarning")
def test_summary_and_export(vision_run, capsys):
    rc, out, _ = run(capsys, "summary", vision_run)
    assert rc == 0
    assert "valid_loss" in out and get_recipe(DEMO_RECIPE).arch in out and "models/best.pth" in out
    assert "validation with TTA: accuracy" in out and "--lr auto" in out  # metrics.json and the rerun line
    assert "best epoch by accuracy (highest): 0 (" in out and "exported (export/, models/best.pth)" in out
    assert "last epoch: 0 (accuracy " in out
    rc, out, err = run(capsys, "export", vision_run, "--torchscript")
    assert rc == 0, err
    ts = torch.jit.load(str(vision_run / "export" / "model.torchscript.pt"))
    assert ts(torch.zeros(2, 1, 28, 28)).shape == (2, 10)


@requires_fmnist
def test_summary_of_a_run_still_training_finds_the_best_epoch_in_metrics_csv(vision_run, tmp_path, capsys):
    """Before metrics.json exists (a run in progress), summary picks the best epoch from metrics.csv by the same
    rule: the first metric (accuracy, highest), else the validation loss."""
    import shutil

    folder = tmp_path / "training"
    shutil.copytree(vision_run, folder)
    (folder / "metrics.json").unlink()
    rc, out, err = run(capsys, "summary", folder)
    assert rc == 0, err
    accuracy = float(metrics_rows(folder)[0]["accuracy"])
    assert f"best epoch by accuracy (highest): 0 ({accuracy:.4f})" in out and "exported" not in out
    assert f"last epoch: 0 (accuracy {accuracy:.4f})" in out


@requires_fmnist
def test_export_onnx_gives_the_same_outputs(vision_run, capsys):
    ort = pytest.importorskip("onnxruntime")
    pytest.importorskip("onnxscript")
    rc, out, err = run(capsys, "export", vision_run, "--onnx")
    assert rc == 0, err
    path = vision_run / "export" / "model.onnx"
    assert f"wrote {path}" in out
    x = torch.randn(3, 1, 28, 28)
    session = ort.InferenceSession(str(path))
    got = session.run(None, {session.get_inputs()[0].name: x.numpy()})[0]
    with torch.no_grad():
        want = load_learner(vision_run / "export").model(x)
    torch.testing.assert_close(torch.from_numpy(got), want, rtol=1e-4, atol=1e-4)


@requires_fmnist
def test_a_second_writer_is_refused(vision_run, capsys):
    with RunDir(vision_run).lock():
        rc, _, err = run(capsys, "train-vision", "--resume", vision_run)
        assert rc == 1
        lines = err.strip().splitlines()
        assert lines[0].startswith(f"deepfit: error: run folder '{vision_run}' is in use by process ")
        assert lines[1].startswith("hint: wait for that run to finish")
        rc, _, err = run(capsys, "export", vision_run, "--torchscript")
        assert rc == 1 and "is in use by process" in err
    assert not (vision_run / ".lock").exists()


@requires_fmnist
def test_resume_continues_a_killed_run(png_dir, tmp_path, capsys, monkeypatch):
    args = ["train-vision", str(png_dir), "--epochs", "2", "--bs", "16", "--lr", "1e-2", "--quiet", "--out",
            str(tmp_path)]
    rc, out, err = run(capsys, *args, "--name", "whole")
    assert rc == 0, err
    _check_best_epoch(tmp_path / "whole", out)
    with monkeypatch.context() as m:
        kill_after_first_epoch(m)
        rc, _, err = run(capsys, *args, "--name", "killed")
    assert rc == 130 and "--resume" in err
    killed = tmp_path / "killed"
    assert [r["epoch"] for r in metrics_rows(killed)] == ["0"] and not (killed / "export").exists()
    assert not (killed / ".lock").exists()  # an interrupted run lets go of its folder
    rc, out, err = run(capsys, "train-vision", "--resume", killed)
    assert rc == 0, err
    assert "resuming from" in out
    assert [r["epoch"] for r in metrics_rows(killed)] == ["0", "1"]
    a = torch.load(tmp_path / "whole" / "models" / "last.pt", weights_only=True)["model"]
    b = torch.load(killed / "models" / "last.pt", weights_only=True)["model"]
    for k in a:
        torch.testing.assert_close(a[k], b[k], rtol=1e-5, atol=1e-6, msg=k)
    _check_best_epoch(killed, out)  # the best epoch survives the interruption (the tracker is checkpointed)
    assert json.loads((killed / "metrics.json").read_text())["best"]["epoch"] == \
        json.loads((tmp_path / "whole" / "metrics.json").read_text())["best"]["epoch"]


def _check_best_epoch(folder, out: str) -> None:
    """metrics.json's best epoch is the one with the highest accuracy (the first metric), the output names it, and
    the export holds its weights (models/best.pth)."""
    results = json.loads((folder / "metrics.json").read_text())
    history = results["history"]
    best, last = results["best"], results["last"]
    assert (best["monitor"], best["mode"], best["exported"]) == ("accuracy", "max", True)
    top = max(history, key=lambda r: r["accuracy"])  # the earliest of equal values, as SaveBestModel
    assert best["epoch"] == top["epoch"] and best["accuracy"] == top["accuracy"]
    assert last == history[-1] and last["epoch"] == 1
    assert f"best model: epoch {best['epoch']} by highest accuracy (accuracy {best['accuracy']:.4f}), exported" in out
    assert f"last epoch 1 (accuracy {last['accuracy']:.4f})" in out
    exported = load_learner(folder / "export").model.state_dict()
    saved = torch.load(folder / "models" / "best.pth", weights_only=True)
    for k, v in saved.items():
        torch.testing.assert_close(exported[k], v, msg=k)


@requires_fmnist
def test_transfer_from_local_weights(png_dir, tmp_path, capsys, monkeypatch):
    from deepfit.models import get_model

    weights = tmp_path / "pretrained.pth"
    torch.save(get_model("simple_cnn", c_in=1, n_out=5).state_dict(), weights)
    monkeypatch.chdir(tmp_path)  # a relative --out, as `make demo` uses
    rc, out, err = run(capsys, "train-vision", png_dir, "--weights", weights, "--freeze-epochs", "1", "--out",
                       "runs", "--name", "t", *TINY)
    assert rc == 0, err
    assert sorted(p.name for p in (tmp_path / "runs").iterdir()) == ["t"]
    learn = load_learner(tmp_path / "runs" / "t" / "export")
    assert learn.spec["arch"] == "vision_model" and len(learn.vocab) == 10
    assert [r["epoch"] for r in metrics_rows(tmp_path / "runs" / "t")] == ["0", "0"]  # frozen phase, then unfrozen


@requires_fmnist
def test_lr_find_command(png_dir, tmp_path, capsys):
    rc, out, err = run(capsys, "lr-find", png_dir, "--bs", "16", "--num-it", "20", "--out", tmp_path)
    assert rc == 0, err
    assert "suggested lr:" in out and (tmp_path / "lr_find.png").is_file()


def test_images_of_different_sizes_need_size(tmp_path, capsys):
    from PIL import Image

    for cls, size in (("a", (20, 24)), ("b", (30, 18))):
        (tmp_path / "data" / cls).mkdir(parents=True)
        for i in range(3):
            Image.new("RGB", size, (40 * i, 90, 200)).save(tmp_path / "data" / cls / f"{i}.png")
    rc, _, err = run(capsys, "train-vision", tmp_path / "data", "--out", tmp_path / "runs", *TINY)
    assert rc == 2
    lines = err.strip().splitlines()
    assert lines[0].startswith(f"deepfit: error: images in '{tmp_path / 'data'}' differ in size")
    assert lines[1] == "hint: add --size N to resize (and centre-crop) every image to N×N"
    rc, out, err = run(capsys, "train-vision", tmp_path / "data", "--size", "16", "--valid-pct", "0.34",
                       "--out", tmp_path / "runs", "--name", "s", *TINY)
    assert rc == 0, err
    assert load_learner(tmp_path / "runs" / "s" / "export").spec["input"]["size"] == [16, 16]


@requires_fmnist
def test_unknown_arch_lists_the_registered_ones(png_dir, tmp_path, capsys):
    rc, _, err = run(capsys, "train-vision", png_dir, "--arch", "resnet9000", "--out", tmp_path)
    assert rc == 2
    assert "unknown --arch 'resnet9000'" in err and "xresnet18" in err and "simple_cnn" in err
    assert not any(tmp_path.iterdir())  # no run folder left behind


def test_name_outside_out_is_refused(tmp_path, capsys):
    rc, _, err = run(capsys, "train-vision", "fashion-mnist", "--out", tmp_path / "runs", "--name", "../../X")
    assert rc == 2
    assert err.splitlines()[0] == ("deepfit: error: argument --name: '../../X' is not a plain folder name (the run "
                                   "folder is made inside --out)")
    assert not (tmp_path / "X").exists() and not (tmp_path.parent / "X").exists()


@requires_fmnist
def test_recipe_sets_the_options_given_ones_win_and_a_crop_preset_never_flips(png_dir, tmp_path, capsys,
                                                                               monkeypatch):
    """`--recipe fmnist_fast --augment crop --tta 2`: the recipe's model and schedule, the given augmentation and TTA
    passes, no flip in training or TTA (TTA uses only the label-preserving transforms of the preset in use)."""
    from deepfit.data.transforms import Flip

    def no_flip(self, x):
        raise AssertionError("a flip with --augment crop")

    monkeypatch.setattr(Flip, "__call__", no_flip)
    recipe = get_recipe("fmnist_fast")
    rc, out, err = run(capsys, "train-vision", png_dir, "--recipe", "fmnist_fast", "--augment", "crop", "--tta", "2",
                       *TINY, "--out", tmp_path, "--name", "r")
    assert rc == 0, err
    folder = tmp_path / "r"
    config = json.loads((folder / "config.json").read_text())
    options, settings = config["options"], config["resolved"]["settings"]
    assert (options["recipe"], options["augment"], options["epochs"], options["bs"]) == ("fmnist_fast", "crop", 1, 16)
    assert (options["arch"], options["lr"], options["label_smoothing"], options["tta"], options["channels_last"]) == \
        (recipe.arch, recipe.lr, recipe.label_smoothing, 2, recipe.channels_last)
    assert settings["arch_kwargs"] == recipe.arch_kwargs and settings["wd"] == recipe.wd
    assert "settings from recipe fmnist_fast; given on the command line: --epochs, --bs, --augment, --tta" in out
    assert "validation with TTA (2 passes)" in out
    assert json.loads((folder / "metrics.json").read_text())["tta_passes"] == 2
    learn = load_learner(folder / "export")
    assert learn.spec["kwargs"]["widths"] == recipe.arch_kwargs["widths"]  # the recipe's widths are exported


@requires_fmnist
@pytest.mark.parametrize("fp32_s, bf16_s, chosen", [(0.2, 0.1, "bf16"), (0.1, 0.2, "fp32")])
def test_precision_auto_says_and_records_what_it_chose(fp32_s, bf16_s, chosen, png_dir, tmp_path, capsys,
                                                        monkeypatch):
    """`--precision auto` (the default) on a CPU with native bf16: the probe decides (mocked here: no timing)."""
    from deepfit.learner import auto_precision

    monkeypatch.setenv("DEEPFIT_DATA", str(tmp_path / "cache"))  # the probe's cache
    monkeypatch.setattr(auto_precision, "cpu_has_fast_bf16", lambda: True)
    monkeypatch.setattr(auto_precision, "probe_bf16", lambda model, xb, device_type="cpu", reps=3: (fp32_s, bf16_s))
    rc, out, err = run(capsys, "train-vision", png_dir, "--epochs", "0", "--bs", "16", "--quiet", "--out", tmp_path,
                       "--name", chosen)
    assert rc == 0, err
    precision = json.loads((tmp_path / chosen / "config.json").read_text())["resolved"]["precision"]
    assert precision["precision"] == chosen and precision["probe_seconds"] == {"fp32": fp32_s, "bf16": bf16_s}
    assert ("faster" if chosen == "bf16" else "not faster") in precision["reason"]
    assert f"deepfit: precision {chosen}: {precision['reason']}" in out
    rc, out, err = run(capsys, "train-vision", png_dir, "--epochs", "0", "--bs", "16", "--quiet", "--out", tmp_path,
                       "--name", chosen + "32", "--precision", "fp32")
    assert rc == 0, err
    precision = json.loads((tmp_path / (chosen + "32") / "config.json").read_text())["resolved"]["precision"]
    assert precision == {"precision": "fp32", "loss_scale": False, "reason": "requested (--precision fp32)"}


@requires_fmnist
def test_ema_averages_every_step_and_the_export_holds_the_average(png_dir, tmp_path, capsys, monkeypatch):
    """`--ema 0.9`: recorded in config.json; the average is updated after each of the 5 steps (80 images, batch 16),
    and the exported model is the averaged one that the last validation measured."""
    from deepfit.learner.callbacks.ema import EMA

    seen: list[EMA] = []
    original = EMA.after_fit

    def keep(self):
        original(self)
        seen.append(self)

    monkeypatch.setattr(EMA, "after_fit", keep)
    rc, out, err = run(capsys, "train-vision", png_dir, "--ema", "0.9", "--arch", "simple_cnn", *TINY,
                       "--out", tmp_path, "--name", "e")
    assert rc == 0, err
    folder = tmp_path / "e"
    assert json.loads((folder / "config.json").read_text())["options"]["ema"] == 0.9
    (ema,) = seen
    assert ema.n_updates == 5
    exported = load_learner(folder / "export").model.state_dict()
    for k, v in ema.shadow.items():
        torch.testing.assert_close(exported[k], v)


def test_ema_outside_zero_to_one_is_refused(tmp_path, capsys):
    rc, _, err = run(capsys, "train-vision", tmp_path, "--ema", "1")
    assert rc == 2 and "argument --ema: must be in [0, 1), got 1.0" in err
