"""`cnnlab data info`: the table a user reads and the grid PNG they open."""

import io

import pytest
from PIL import Image
from rich.console import Console

from cnnlab.cli import main
from cnnlab.config.schema import DataConfig
from cnnlab.data import build
from cnnlab.data.info import show, split_counts, write_sample_grid


def test_split_counts_per_class_add_up():
    bundle = build(DataConfig())
    counts = {s.name: s for s in split_counts(bundle)}
    assert set(counts) == {"train", "val"}
    assert sum(counts["train"].per_class) == counts["train"].total == 1438
    assert sum(counts["val"].per_class) == 359


def test_show_prints_classes_counts_size_and_stats():
    bundle = build(DataConfig())
    out = io.StringIO()
    show(bundle, Console(file=out, width=100))
    text = out.getvalue()
    for expected in ("classes", "10", "1,438", "359", "8×8", "channels", "mean", "std"):
        assert expected in text
    assert f"{bundle.info.mean[0]:.4f}" in text


@pytest.mark.slow
def test_grid_has_one_row_per_shown_class(tmp_path):
    bundle = build(DataConfig())
    write_sample_grid(bundle, tmp_path / "grid.png")
    with Image.open(tmp_path / "grid.png") as img:
        assert img.format == "PNG" and img.height > img.width * 0.9  # 10 rows of 8


@pytest.mark.slow
def test_cli_data_info_by_name_writes_the_grid(tmp_path, capsys):
    grid = tmp_path / "g.png"
    assert main(["data", "info", "digits", "-o", str(grid), "data.val_split=100"]) == 0
    out = capsys.readouterr().out
    assert "100" in out and f"sample grid: {grid}" in out
    assert grid.stat().st_size > 1000


def test_cli_data_info_on_an_unrecognised_path_is_a_user_error(tmp_path, capsys):
    assert main(["data", "info", str(tmp_path)]) == 2
    assert "pass data.name=NAME" in capsys.readouterr().err


def test_cli_data_info_recognises_a_folder_path(tmp_path, capsys):
    from PIL import Image as PILImage

    for c, name in enumerate(("ant", "bee")):
        (tmp_path / "bugs" / name).mkdir(parents=True)
        for i in range(6):
            PILImage.new("L", (5, 5), 30 * c + i).save(tmp_path / "bugs" / name / f"{i}.png")
    grid = tmp_path / "bugs.png"
    args = ["data", "info", str(tmp_path / "bugs"), "-o", str(grid), "data.val_split=2"]
    assert main([*args, f"data.cache_dir={tmp_path / 'cache'}"]) == 0
    out = capsys.readouterr().out
    assert "dataset folder" in out and "ant" in out and "bee" in out and "5×5" in out
    assert grid.is_file()


@pytest.mark.slow
def test_cli_data_info_says_first_where_the_data_was_read(tmp_path, capsys):
    assert main(["data", "info", "digits", "-o", str(tmp_path / "g.png")]) == 0
    first = capsys.readouterr().out.splitlines()[0]
    assert first == "digits read from scikit-learn's bundled digits (sklearn.datasets.load_digits)"


def test_cli_data_info_with_a_bad_root_exits_2_naming_it(tmp_path, capsys, monkeypatch):
    from cnnlab.data.sources import idx

    # Even with a copy in the system's place: an explicit data.root is never swapped for it.
    monkeypatch.setattr(idx, "FASHION_SYSTEM_DIR", tmp_path / "system")
    missing = tmp_path / "nonexistent" / "dir"
    args = ["data", "info", "fashion-mnist", f"data.root={missing}", "-o", str(tmp_path / "g.png")]
    assert main(args) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and f"data.root = {missing} does not exist" in err
    assert not (tmp_path / "g.png").exists()


def test_cli_data_info_refuses_an_output_it_cannot_write_before_reading(tmp_path, capsys):
    assert main(["data", "info", "digits", "-o", str(tmp_path)]) == 2
    assert "is a directory" in capsys.readouterr().err
    assert main(["data", "info", "digits", "-o", str(tmp_path / "no" / "g.png")]) == 2
    assert "does not exist" in capsys.readouterr().err
    assert not (tmp_path / "no").exists()
