"""A run stopped before its first epoch's checkpoint resumes from step 0 and says so."""

from cnnlab.training import loop
from cnnlab.training.experiment import train
from cnnlab.training.resume import resume


def test_resuming_from_the_step_0_checkpoint_prints_the_resuming_line(quick, monkeypatch):
    def killed(*args, **kwargs):
        raise KeyboardInterrupt  # a second Ctrl-C in epoch 1: only the step-0 checkpoint exists

    with monkeypatch.context() as m:
        m.setattr(loop, "train_epoch", killed)
        first = train(quick("train.epochs=1"), quiet=True)
    assert first.status == "interrupted" and first.summary["epochs_run"] == 0
    again = resume(first.path, quiet=True)
    assert again.status == "completed"
    log = (first.path / "log.txt").read_text()
    resumed_at = log.index("resuming after epoch 0, step 0")
    assert log.count("digits: 1438 train") == 2 and log.rindex("digits: 1438 train") > resumed_at
