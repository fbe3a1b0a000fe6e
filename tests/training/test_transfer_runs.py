"""Transfer runs end to end: a digits run on classes 0-4 reused for classes 5-9."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file

from cnnlab.analyze.trained import load_trained
from cnnlab.checkpoint import load_state, load_weights
from cnnlab.cli import main
from cnnlab.config import load_config
from cnnlab.errors import ConfigError
from cnnlab.models.transfer import load_backbone
from cnnlab.training import experiment
from cnnlab.training.step import score

SOURCE = ["data.classes=[0,1,2,3,4]", "model.width=8", "train.epochs=3"]
TARGET = ["data.classes=[5,6,7,8,9]", "train.epochs=2"]


@pytest.fixture(scope="module")
def source(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("source")
    config = load_config(overrides=[*SOURCE, f"run.dir={root}", "run.name=source"])
    result = experiment.train(config)
    assert result.status == "completed" and result.summary["best_val_acc"] > 0.9
    return result.path


def transfer(tmp_path: Path, backbone: Path | str, *overrides: str) -> experiment.RunResult:
    config = load_config(
        overrides=[*TARGET, f"model.backbone={backbone}", f"run.dir={tmp_path}", *overrides]
    )
    return experiment.train(config)


def backbone_weights(run: Path) -> dict[str, torch.Tensor]:
    """The backbone part of a transfer run's best weights, named as in the source net."""
    weights = load_weights(run / "checkpoints" / "best.safetensors")
    return {k.removeprefix("backbone."): v for k, v in weights.items() if k.startswith("backbone.")}


def source_weights(run: Path) -> dict[str, torch.Tensor]:
    """The source run's weights but its classifier (the last linear layer: 8.3 at 8x8 px)."""
    weights = load_weights(run / "checkpoints" / "best.safetensors")
    return {k: v for k, v in weights.items() if not k.startswith("8.3.")}


@pytest.mark.slow
def test_frozen_backbone_trains_the_head_on_cached_features(tmp_path, source):
    result = transfer(tmp_path, source)
    assert result.status == "completed"
    log = (result.path / "log.txt").read_text()
    assert "features of 717 train + 179 val images (32 each) cached" in log
    assert result.summary["feature_seconds"] > 0
    assert result.summary["data"]["classes"] == ["5", "6", "7", "8", "9"]
    frozen = backbone_weights(result.path)
    original = source_weights(source)
    assert frozen.keys() == original.keys()
    assert all(torch.equal(frozen[k], original[k]) for k in original)  # BatchNorm stats too
    assert result.path.name.endswith("digits-from-source")


def test_cached_features_score_what_the_whole_net_scores(tmp_path, source):
    """Evaluation on cached features equals evaluating the saved transfer net on images."""
    result = transfer(tmp_path, source)
    run = load_trained(result.path)
    acc = score(run.model, run.loader("val"), "fp32").accuracy
    assert acc == pytest.approx(result.summary["best_val_acc"], abs=1e-6)


def test_fine_tuning_changes_the_backbone(tmp_path, source):
    result = transfer(tmp_path, source, "transfer.freeze=false")
    assert "cached" not in (result.path / "log.txt").read_text()
    tuned, original = backbone_weights(result.path), source_weights(source)
    assert any(not torch.equal(tuned[k], original[k]) for k in original)


def test_unfreeze_after_keeps_the_backbone_fixed_until_then(tmp_path, source, monkeypatch):
    snapshots = []
    fit = experiment.fit

    def watching(parts, *args, log_epoch, **kwargs):
        def log(metrics):
            snapshots.append({k: v.clone() for k, v in parts.model.backbone.state_dict().items()})
            log_epoch(metrics)

        return fit(parts, *args, log_epoch=log, **kwargs)

    monkeypatch.setattr(experiment, "fit", watching)
    result = transfer(tmp_path, source, "transfer.unfreeze_after=1", "train.epochs=3")
    assert result.status == "completed"
    original = source_weights(source)
    epoch1, epoch2 = snapshots[0], snapshots[1]
    assert all(torch.equal(epoch1[k], original[k]) for k in original)
    assert any(not torch.equal(epoch2[k], original[k]) for k in original)
    lrs = {
        g["lr_mult"]
        for g in load_state(result.path / "checkpoints" / "last.ckpt")["optimizer"]["param_groups"]
    }
    assert lrs == {0.1, 1.0}  # transfer.backbone_lr_mult for the backbone, 1 for the head


@pytest.mark.slow
def test_unfreezing_run_stopped_mid_epoch_resumes_exactly(tmp_path, source, monkeypatch):
    from cnnlab.training.resume import resume
    from cnnlab.training.stop import Stopper

    exact = ["train.deterministic=true", "transfer.unfreeze_after=1", "train.epochs=3"]
    unbroken = transfer(tmp_path / "a", source, *exact)
    asked = {"n": 0}

    def reason(self):  # a stop request at the 15th step: in epoch 2, after the unfreezing
        asked["n"] += 1
        if asked["n"] >= 15:
            self.requested = "interrupted"
        return self.requested

    monkeypatch.setattr(Stopper, "reason", reason)
    stopped = transfer(tmp_path / "b", source, *exact)
    assert stopped.status == "interrupted"
    monkeypatch.undo()
    resumed = resume(stopped.path)
    a = load_state(unbroken.path / "checkpoints" / "last.ckpt")["model"]
    b = load_state(resumed.path / "checkpoints" / "last.ckpt")["model"]
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_a_checkpoint_file_is_a_backbone_even_outside_its_run(tmp_path, source):
    copied = tmp_path / "elsewhere.safetensors"
    shutil.copy(source / "checkpoints" / "best.safetensors", copied)  # header: config and data
    for spec in (source / "checkpoints" / "best.safetensors", source / "checkpoints" / "last.ckpt"):
        assert load_backbone(str(spec)).image_size == (8, 8)
    backbone = load_backbone(str(copied))
    original = source_weights(source)
    state = backbone.net.state_dict()
    assert all(torch.equal(state[k], original[k]) for k in original)
    assert backbone.channels == 1 and len(backbone.mean) == 1


def test_a_transfer_run_is_itself_a_backbone(tmp_path, source):
    first = transfer(tmp_path, source)
    second = transfer(tmp_path, first.path, "data.classes=[5,6,7]", "transfer.head=mlp")
    assert second.status == "completed"
    assert second.summary["data"]["classes"] == ["5", "6", "7"]


def test_random_init_control_has_other_weights(tmp_path, source):
    result = transfer(tmp_path, source, "transfer.pretrained=false")
    random, original = backbone_weights(result.path), source_weights(source)
    assert any(not torch.equal(random[k], original[k]) for k in original if "weight" in k)


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        (["transfer.freeze=false"], "transfer.freeze is set but model.backbone is not"),
        (
            ["model.backbone={source}", "model.width=16"],
            "model.width = 16: with model.backbone the backbone decides the architecture",
        ),
        (
            ["model.backbone={source}", "transfer.unfreeze_after=2"],
            "transfer.unfreeze_after = 2: the run has train.epochs = 2",
        ),
        (
            ["model.backbone={source}", "transfer.freeze=false", "transfer.unfreeze_after=1"],
            "transfer.unfreeze_after is set but transfer.freeze is false",
        ),
        (["model.backbone=/no/such/run"], "no such run directory or checkpoint file"),
        (["model.backbone={source}", "transfer.layer=nope"], "transfer.layer = 'nope'"),
    ],
)
def test_bad_transfer_configs_are_one_line_errors(tmp_path, source, capsys, overrides, message):
    args = [o.format(source=source) for o in overrides]
    code = main(["train", *TARGET, f"run.dir={tmp_path / 'runs'}", *args])
    err = capsys.readouterr().err
    assert code == 2 and message in err and len(err.strip().splitlines()) == 1, err
    assert not (tmp_path / "runs").exists()  # nothing written


def test_foreign_weights_are_refused_with_a_hint(tmp_path):
    foreign = tmp_path / "resnet.safetensors"
    save_file({"w": torch.zeros(2)}, str(foreign))
    with pytest.raises(ConfigError, match="not a cnnlab checkpoint .* torchvision:NAME"):
        load_backbone(str(foreign))


def test_cnnlab_transfer_needs_a_backbone(tmp_path, capsys):
    assert main(["transfer", f"run.dir={tmp_path}"]) == 2
    assert "cnnlab transfer needs model.backbone=" in capsys.readouterr().err


def test_summary_shows_the_backbone_rows_to_cut_at(source, capsys):
    assert main(["summary", *TARGET, f"model.backbone={source}", "transfer.layer=-4"]) == 0
    out = capsys.readouterr().out
    assert "transfer.layer: a # or layer of this table" in out
    assert "transfer net on digits: 5 classes" in out


@pytest.mark.slow
def test_eval_command_reads_a_transfer_run(tmp_path, source, capsys):
    result = transfer(tmp_path, source)
    assert main(["eval", str(result.path)]) == 0
    report = json.loads((result.path / "eval-val.json").read_text())
    assert report["accuracy"] == pytest.approx(result.summary["best_val_acc"], abs=1e-6)


@pytest.mark.slow
def test_on_real_digits_pretrained_beats_random_and_fine_tuning_beats_frozen(tmp_path):
    """Digits 0-4 -> 5-9, every target run with the same head, optimizer and epochs. Measured
    (seeds 0, 1, 2): frozen pretrained 57.5/57.0/65.4%, frozen random 37.4/20.1/20.1%,
    fine-tuned 99.4/99.4/98.3% validation accuracy."""
    common = [f"run.dir={tmp_path}", "train.seed=0"]
    source = experiment.train(
        load_config(
            overrides=[*common, "data.classes=[0,1,2,3,4]", "model.width=16", "train.epochs=5"]
        )
    )
    target = [*common, "data.classes=[5,6,7,8,9]", f"model.backbone={source.path}"]
    target += ["train.epochs=5", "optim.lr=0.01"]

    def accuracy(*extra: str) -> float:
        result = experiment.train(load_config(overrides=[*target, *extra]))
        return result.summary["final_val_acc"]

    pretrained, random = accuracy(), accuracy("transfer.pretrained=false")
    tuned = accuracy("transfer.freeze=false")
    assert pretrained > random + 0.1
    assert tuned > pretrained + 0.1


@pytest.mark.slow
def test_torchvision_backbone_from_the_local_cache_end_to_end(tmp_path, monkeypatch, capsys):
    """Gray 8x8 digits into an ImageNet resnet18 whose weights sit in the torch hub cache (a
    randomly initialised stand-in in the real file format): channels repeated, ImageNet
    normalisation, resized to transfer.input_size; the cut at layer3 is pooled 2x2."""
    import torchvision

    from cnnlab.models import hub as pretrained

    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    monkeypatch.setattr(pretrained, "_download", _no_network)
    path = pretrained.cache_location("torchvision:resnet18")
    path.parent.mkdir(parents=True)
    torch.save(torchvision.models.resnet18().state_dict(), path)
    code = main(
        [
            "transfer",
            *TARGET,
            "train.epochs=1",
            "model.backbone=torchvision:resnet18",
            "transfer.layer=layer3",
            "transfer.pool_size=2",
            "transfer.input_size=32",
            f"run.dir={tmp_path / 'runs'}",
        ]
    )
    assert code == 0, capsys.readouterr().err
    (run,) = (tmp_path / "runs").iterdir()
    assert run.name.endswith("digits-from-resnet18")
    weights = load_weights(run / "checkpoints" / "best.safetensors")
    assert weights["head.0.weight"].shape == (5, 256 * 4)  # layer3: 256 channels, pooled 2x2
    assert "backbone.extractor.layer4.0.conv1.weight" not in weights  # cut after layer3
    assert torch.equal(weights["adapter.mean"].flatten(), torch.tensor([0.485, 0.456, 0.406]))

    path.unlink()  # offline and not cached: a one-line error naming where it looked
    assert main(["transfer", *TARGET, "model.backbone=torchvision:resnet18"]) == 2
    err = capsys.readouterr().err
    assert str(path) in err and len(err.strip().splitlines()) == 1


def _no_network(url, path):
    raise OSError("network unreachable (test)")


def test_lr_find_on_cached_features(tmp_path, source, capsys):
    out = tmp_path / "lr"
    args = ["lr-find", *TARGET, f"model.backbone={source}", "--steps", "30", "-o", str(out)]
    assert main(args) == 0, capsys.readouterr().err
    assert (out / "lr_find.json").is_file()


def test_features_too_large_for_memory_are_not_cached(tmp_path, source):
    result = transfer(tmp_path, source, "data.max_resident_mb=0.01", "data.num_workers=0")
    log = (result.path / "log.txt").read_text()
    assert "features not cached: 896 x 32 features would take 0.1 MiB" in log.replace("\n", " ")
    assert "feature_seconds" not in result.summary and result.status == "completed"


@pytest.mark.slow
def test_runs_list_names_the_backbone(tmp_path, source, capsys):
    transfer(tmp_path, source)
    capsys.readouterr()
    assert main(["runs", "list", "--root", str(tmp_path)]) == 0
    assert "from source" in capsys.readouterr().out
