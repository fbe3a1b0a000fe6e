import pytest
import torch
from PIL import Image

from cnnlab.augment.policy import build_pipeline
from cnnlab.augment.preview import augmented_rows
from cnnlab.cli import main


def test_rows_start_with_the_original_then_the_draws():
    images = torch.randint(0, 256, (3, 1, 5, 5), dtype=torch.uint8)
    pipe = build_pipeline([{"op": "flip", "p": 1.0}], 10, 1, (5, 5))
    rows = augmented_rows(images, torch.tensor([2, 0, 1]), ("a", "b", "c"), pipe, draws=2)
    assert [label for label, _ in rows] == ["c", "a", "b"]
    for (_, row), original in zip(rows, images, strict=True):
        assert row.shape == (3, 1, 5, 5) and row.dtype == torch.uint8
        assert torch.equal(row[0], original) and torch.equal(row[1], original.flip(-1))


@pytest.mark.slow
def test_cli_preview_writes_a_grid(tmp_path, capsys):
    out = tmp_path / "p.png"
    args = ["augment", "preview", "-o", str(out), "--images", "3", "--draws", "4"]
    assert main([*args, "augment.train=[{op: crop, padding: 1}, {op: cutmix}]"]) == 0
    with Image.open(out) as img:
        assert img.format == "PNG" and img.width > img.height  # 3 rows of 5
    assert str(out) in capsys.readouterr().out


def test_cli_preview_bad_op_is_a_user_error(capsys):
    assert main(["augment", "preview", "augment.train=[{op: twirl}]"]) == 2
    assert "augment.train[0]: unknown augmentation op 'twirl'" in capsys.readouterr().err
