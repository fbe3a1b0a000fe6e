from cnnlab.cli import main


def test_a_run_that_cannot_fit_in_memory_is_one_line_before_its_directory_exists(tmp_path, capsys):
    layers = "[conv(8,3),flatten,linear(100000000000),linear(10)]"
    argv = ["train", "model.name=layers", f"model.layers={layers}", f"run.dir={tmp_path / 'runs'}"]
    assert main(argv) == 2
    (line,) = capsys.readouterr().err.splitlines()
    assert "model.name = 'layers' with 52,300,000,000,090 parameters" in line
    assert "needs at least" in line and "GiB free" in line and "train.batch_size" in line
    assert not (tmp_path / "runs").exists()
