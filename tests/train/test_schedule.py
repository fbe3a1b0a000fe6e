import pytest
import torch

from cnnlab.config.schema import ScheduleConfig
from cnnlab.train import schedule


@pytest.mark.parametrize("name", schedule.SCHEDULES.names())
def test_every_schedule_stays_between_floor_and_peak(name):
    at = schedule.multiplier(ScheduleConfig(name=name, min_lr=0.01), 0.1, 10, 5)
    values = [at(step) for step in range(50)]
    assert all(0.1 - 1e-9 <= v <= 1.0 + 1e-9 for v in values)


def test_cosine_runs_from_peak_to_min_lr():
    at = schedule.multiplier(ScheduleConfig(name="cosine", min_lr=0.001), 0.01, 100, 1)
    assert at(0) == pytest.approx(1.0)
    assert at(50) == pytest.approx(0.1 + 0.9 * 0.5, rel=1e-2)  # half-way: mean of peak and floor
    assert at(99) == pytest.approx(0.1, abs=1e-3)
    assert all(at(s) >= at(s + 1) for s in range(99))


def test_warmup_ramps_linearly_then_hands_over():
    at = schedule.multiplier(ScheduleConfig(name="constant", warmup_epochs=1), 1.0, 4, 3)
    assert [at(s) for s in range(6)] == [0.25, 0.5, 0.75, 1.0, 1.0, 1.0]


def test_scheduler_sets_the_optimizer_lr_per_step():
    param = torch.nn.Parameter(torch.zeros(1))
    opt = torch.optim.SGD([param], lr=0.2)
    sched = schedule.build(opt, ScheduleConfig(name="cosine"), 0.2, steps_per_epoch=5, epochs=2)
    lrs = []
    for _ in range(10):
        lrs.append(opt.param_groups[0]["lr"])
        opt.step()
        sched.step()
    assert lrs[0] == pytest.approx(0.2)
    assert lrs[-1] < 0.01
