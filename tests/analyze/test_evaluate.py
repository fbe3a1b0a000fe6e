"""`cnnlab eval` on one tiny trained run: numbers agree with training and with scikit-learn,
the files the report embeds, and the command line's errors."""

import csv
import json

import numpy as np
import pytest
import torch
from PIL import Image
from sklearn.metrics import confusion_matrix, precision_recall_fscore_support

from cnnlab.analyze.evaluate import data_overrides, evaluate_run, write
from cnnlab.analyze.trained import load_trained
from cnnlab.augment.tta import build_views
from cnnlab.cli import main
from cnnlab.config import load_config
from cnnlab.errors import ConfigError
from cnnlab.report.results import result_sections
from cnnlab.training.experiment import train
from cnnlab.training.step import score

SHIFT = {"view": "shift", "pixels": 1}


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """A 3-epoch narrow net on digits-with-test (val and test splits), trained with flips and
    no augment.tta."""
    with pytest.MonkeyPatch.context() as mp:  # the autouse cache fixture is per test
        mp.setenv("XDG_CACHE_HOME", str(tmp_path_factory.getbasetemp() / "xdg-cache"))
        overrides = [
            "model.width=8",
            "train.epochs=3",
            "train.device=cpu",
            "data.name=digits-with-test",
            "augment.train=[{op: flip}]",
            f"run.dir={tmp_path_factory.mktemp('runs')}",
        ]
        result = train(load_config(overrides=overrides))
        yield result, load_trained(result.path)


@pytest.fixture(scope="module")
def val(trained):
    return evaluate_run(trained[1], "val", top_k=(1, 2, 3, 5, 10, 50))


@pytest.mark.slow
def test_accuracy_and_loss_are_what_training_measured(trained, val):
    result, run = trained
    history = [
        json.loads(line) for line in (result.path / "metrics.jsonl").read_text().splitlines()
    ]
    best = history[result.summary["best_epoch"] - 1]
    assert best["val_acc"] == result.summary["best_val_acc"]
    assert val.accuracy == pytest.approx(best["val_acc"], abs=1e-6)
    assert val.loss == pytest.approx(best["val_loss"], rel=1e-5)
    test = evaluate_run(run, "test", worst=0)
    assert test.accuracy == pytest.approx(result.summary["test_acc"], abs=1e-6)
    assert test.count == len(run.bundle.test) and not test.worst


def test_confusion_matrix_and_per_class_numbers(trained, val):
    images = trained[1].images("val")
    k = trained[1].info.num_classes
    counts = torch.bincount(images.labels, minlength=k).numpy()
    assert val.confusion.shape == (k, k)
    assert (val.confusion.sum(axis=1) == counts).all() and val.support == counts.tolist()
    assert np.trace(val.confusion) / val.confusion.sum() == pytest.approx(val.accuracy, abs=1e-12)
    recall = np.diag(val.confusion) / val.confusion.sum(axis=1)
    assert np.allclose(val.recall, recall)
    assert (val.labels == images.labels.numpy()).all()
    everyone = list(range(k))
    assert (confusion_matrix(val.labels, val.predictions, labels=everyone) == val.confusion).all()
    p, r, f, s = precision_recall_fscore_support(
        val.labels, val.predictions, labels=everyone, zero_division=0
    )
    assert np.allclose(val.precision, p) and np.allclose(val.recall, r)
    assert np.allclose(val.f1, f) and val.support == s.tolist()
    macro = precision_recall_fscore_support(
        val.labels, val.predictions, labels=everyone, average="macro", zero_division=0
    )
    assert val.macro == pytest.approx(
        dict(zip(("precision", "recall", "f1"), macro[:3], strict=True))
    )
    # Not trivially perfect or empty, so the checks above compare something.
    assert 0.3 < val.accuracy < 1.0


def test_top_k_is_capped_and_monotone(val):
    assert list(val.top_k) == [1, 2, 3, 5, 10]  # 50 capped at the 10 classes
    values = list(val.top_k.values())
    assert values == sorted(values) and values[0] == val.accuracy and values[-1] == 1.0


def test_worst_are_the_highest_losses_with_their_images(trained, val):
    assert len(val.worst) == 16
    losses = [w["loss"] for w in val.worst]
    assert losses == sorted(losses, reverse=True) and losses[0] == val.losses.max()
    assert losses[-1] >= np.sort(val.losses)[-16]
    images = trained[1].images("val")
    index = torch.tensor([w["index"] for w in val.worst])
    assert torch.equal(val.worst_images, images.images[index])
    classes = trained[1].info.classes
    assert [w["true"] for w in val.worst] == [classes[i] for i in images.labels[index]]


def test_tta_refused_for_a_run_that_learned_no_view(trained):
    """A mirror the model never saw costs accuracy (Fashion-MNIST: 83% against 91%)."""
    unflipped = load_trained(trained[1].path, ["augment.train=[]"])
    with pytest.raises(ConfigError, match="did not train on flipped images"):
        evaluate_run(unflipped, "val", tta=True)


def test_tta_flip_when_trained_with_flips_and_the_runs_views_when_configured(trained, val):
    _, run = trained
    flipped = evaluate_run(run, "val", tta=True, worst=0)
    assert val.views == [] and flipped.views == ["flip"]
    assert flipped.loss != val.loss  # the mirror views changed the logits
    assert flipped.confusion.sum() == val.count and 0.0 < flipped.accuracy <= 1.0
    expected = score(run.model, run.loader("val"), "fp32", build_views(["flip"]))
    expected = (expected.loss, expected.accuracy)
    assert (flipped.loss, flipped.accuracy) == pytest.approx(expected, abs=1e-6)

    shifted_run = load_trained(run.path, ["augment.tta=[{view: shift, pixels: 1}]"])
    shifted = evaluate_run(shifted_run, "val", tta=True, worst=0)
    assert shifted.views == [SHIFT]
    expected = score(run.model, run.loader("val"), "fp32", build_views([SHIFT]))
    expected = (expected.loss, expected.accuracy)
    assert (shifted.loss, shifted.accuracy) == pytest.approx(expected, abs=1e-6)
    assert shifted.loss != flipped.loss
    # Without --tta the run's views are not used.
    assert evaluate_run(shifted_run, "val", worst=0).loss == pytest.approx(val.loss, abs=1e-9)


@pytest.mark.slow
def test_files_in_the_run_directory(trained, val, tmp_path):
    paths = write(val, tmp_path)
    names = ["eval-val.json", "confusion-val.csv", "confusion-val.png", "worst-val.png"]
    assert [p.name for p in paths] == names and all(p.is_file() for p in paths)
    shown = "".join(result_sections(tmp_path))  # the report embeds what eval wrote
    assert "<h4>Confusion matrix" in shown and "<table>" in shown and "data:image/png" in shown
    rows = list(csv.reader((tmp_path / "confusion-val.csv").read_text().splitlines()))
    classes = list(trained[1].info.classes)
    assert rows[0] == ["true\\pred", *classes] and [r[0] for r in rows[1:]] == classes
    assert np.array([[int(c) for c in r[1:]] for r in rows[1:]]).tolist() == val.confusion.tolist()
    for png in ("confusion-val.png", "worst-val.png"):
        pixels = np.asarray(Image.open(tmp_path / png).convert("L"), dtype=float)
        assert pixels.shape[0] > 100 and pixels.std() > 10  # drawn on, not blank
    saved = json.loads((tmp_path / "eval-val.json").read_text())
    assert saved["accuracy"] == val.accuracy and saved["top_k"]["5"] == val.top_k[5]
    assert saved["tta"] == [] and saved["images"] == val.count and len(saved["worst"]) == 16
    assert [c["class"] for c in saved["per_class"]] == classes
    assert saved["confusion"] == val.confusion.tolist()
    tta_names = [p.name for p in write(evaluate_run(trained[1], "test", tta=True), tmp_path)]
    assert (tta_names[0], tta_names[-1]) == ("eval-test-tta.json", "worst-test.png")


def test_test_split_errors(trained):
    _, run = trained
    plain = load_trained(run.path, ["data.name=digits"])
    with pytest.raises(ConfigError, match="digits has no test split"):
        evaluate_run(plain, "test")
    with pytest.raises(ConfigError, match="expected one of val, test"):
        evaluate_run(run, "train")


def test_data_overrides():
    assert data_overrides(["data.root=/x", "num_workers=0"]) == [
        "data.root=/x",
        "data.num_workers=0",
    ]
    for bad in ("model.width=4", "root"):
        with pytest.raises(ConfigError, match="--data"):
            data_overrides([bad])


@pytest.mark.slow
def test_cli(trained, capsys):
    path = str(trained[0].path)
    assert main(["eval", path, "--split", "test", "--tta", "--top-k", "3", "--worst", "4"]) == 0
    out = capsys.readouterr().out
    assert "accuracy" in out and "top-3" in out and "macro f1" in out and "TTA: flip" in out
    assert f"wrote {trained[0].path / 'eval-test-tta.json'}" in out
    assert (trained[0].path / "worst-test.png").is_file()

    cases = [
        (["eval", str(trained[0].path.parent / "nope")], "not a run directory"),
        (["eval", path, "--split", "train"], "--split train: expected one of val, test"),
        (["eval", path, "--split", "test", "--data", "data.name=digits"], "no test split"),
        (["eval", path, "--data", "model.width=4"], "only data.* keys"),
    ]
    for args, fragment in cases:
        assert main(args) == 2
        err = capsys.readouterr().err
        assert err.startswith("cnnlab: error: ") and fragment in err
        assert err.count("\n") == 1 and "Traceback" not in err


@pytest.mark.slow
def test_cli_tta_on_a_run_that_never_saw_a_flip_is_a_one_line_error(run_dir, capsys):
    assert main(["eval", str(run_dir), "--tta"]) == 2
    err = capsys.readouterr().err
    assert "--tta: the run has no augment.tta" in err and err.count("\n") == 1


@pytest.mark.slow
def test_each_split_keeps_its_own_confusion_matrix(trained, tmp_path):
    write(evaluate_run(trained[1], "val", worst=0), tmp_path)
    val_csv = (tmp_path / "confusion-val.csv").read_bytes()
    write(evaluate_run(trained[1], "test", tta=True, worst=0), tmp_path)
    assert (tmp_path / "confusion-val.csv").read_bytes() == val_csv
    assert (tmp_path / "confusion-test-tta.csv").is_file()
    shown = "".join(result_sections(tmp_path))
    assert "Confusion matrix (val)" in shown and "Confusion matrix (test-tta)" in shown
