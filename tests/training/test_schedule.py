import json

import pytest
import torch
from torch.optim import lr_scheduler as torch_sched

from cnnlab.config.schema import ScheduleConfig
from cnnlab.errors import CheckpointError, ConfigError
from cnnlab.training import schedule

SPE, EPOCHS = 7, 12  # 7 steps per epoch: epoch boundaries fall off round numbers
TOTAL = SPE * EPOCHS
LRS = (0.1, 0.02)  # two param groups, as from lr_mult
# falls, stalls, falls a little (under the 1e-4 threshold), stalls: several plateau reductions
METRICS = [1.0, 0.8, 0.8, 0.81, 0.79999, 0.8, 0.5, 0.5, 0.6, 0.7, 0.5, 0.4]


def optimizer(lrs=LRS):
    return torch.optim.SGD(
        [{"params": [torch.nn.Parameter(torch.zeros(1))], "lr": lr} for lr in lrs]
    )


def metrics(epoch):
    return {"val_loss": METRICS[epoch % len(METRICS)], "val_acc": 0.5}


def drive(sched, opt, start, stop):
    """lrs of all groups for steps start..stop-1, with an evaluation at every epoch end."""
    lrs = []
    for s in range(start, stop):
        lrs.append([g["lr"] for g in opt.param_groups])
        opt.step()
        sched.step()
        if (s + 1) % SPE == 0:
            sched.epoch_end(metrics(s // SPE))
    return lrs


def flat(rows):
    return [lr for row in rows for lr in row]


def ours(cfg, steps=TOTAL, lrs=LRS):
    opt = optimizer(lrs)
    return drive(schedule.build(opt, cfg, SPE, EPOCHS), opt, 0, steps)


def theirs(name):
    """The same curve from torch's own scheduler, stepped per batch or per epoch like torch."""
    opt = optimizer()
    per_step = {
        "cosine": lambda: torch_sched.CosineAnnealingLR(opt, T_max=TOTAL),
        "linear": lambda: torch_sched.LinearLR(opt, 1.0, 0.0, total_iters=TOTAL),
        "onecycle": lambda: torch_sched.OneCycleLR(
            opt, max_lr=list(LRS), total_steps=TOTAL, pct_start=0.3, cycle_momentum=False
        ),
    }
    per_epoch = {
        "step": lambda: torch_sched.StepLR(opt, step_size=3, gamma=0.1),
        "multistep": lambda: torch_sched.MultiStepLR(opt, milestones=[2, 5, 9], gamma=0.1),
        "exponential": lambda: torch_sched.ExponentialLR(opt, gamma=0.95),
        "plateau": lambda: torch_sched.ReduceLROnPlateau(opt, factor=0.1, patience=1),
    }
    sched = (per_step.get(name) or per_epoch[name])()
    lrs = []
    for s in range(TOTAL):
        lrs.append([g["lr"] for g in opt.param_groups])
        opt.step()
        if name in per_step:
            sched.step()
        elif (s + 1) % SPE == 0:
            sched.step(metrics(s // SPE)["val_loss"]) if name == "plateau" else sched.step()
    return lrs


def cfg_for(name, **kw):
    kw = {"step_size": 3, "milestones": [2, 5, 9], "patience": 1, **kw}
    return ScheduleConfig(name=name, **kw)


@pytest.mark.parametrize(
    "name", ["cosine", "linear", "onecycle", "step", "multistep", "exponential", "plateau"]
)
def test_every_group_follows_torchs_own_scheduler(name):
    got, want = ours(cfg_for(name)), theirs(name)
    assert len({g for row in got for g in row}) > 2  # the curve moves
    for step, (a, b) in enumerate(zip(got, want, strict=True)):
        assert a == pytest.approx(b, rel=1e-9, abs=0), f"step {step}"


@pytest.mark.parametrize(
    "name, torch_like",
    [
        ("cosine", lambda opt: torch_sched.CosineAnnealingLR(opt, T_max=TOTAL, eta_min=0.003)),
        ("linear", lambda opt: torch_sched.LinearLR(opt, 1.0, 0.03, total_iters=TOTAL)),
    ],
)
def test_min_lr_is_where_decay_ends(name, torch_like):
    opt = optimizer((0.1,))
    sched = torch_like(opt)
    want = []
    for _ in range(TOTAL):
        want.append([opt.param_groups[0]["lr"]])
        opt.step()
        sched.step()
    got = ours(cfg_for(name, min_lr=0.003), lrs=(0.1,))
    assert flat(got) == pytest.approx(flat(want), rel=1e-9)


@pytest.mark.parametrize("name", ["step", "multistep", "exponential", "plateau"])
def test_min_lr_floors_epoch_schedules(name):
    lrs = [row[0] for row in ours(cfg_for(name, min_lr=0.05, gamma=0.5), lrs=(0.1,))]
    assert min(lrs) == pytest.approx(0.05)
    assert lrs[0] == pytest.approx(0.1)


def test_constant_holds_each_groups_lr():
    assert ours(cfg_for("constant")) == [list(LRS)] * TOTAL


def test_warmup_ramps_linearly_then_hands_over():
    lrs = [row[0] for row in ours(cfg_for("constant", warmup_epochs=1), steps=10, lrs=(1.0,))]
    assert lrs == pytest.approx([(s + 1) / 7 for s in range(7)] + [1.0] * 3)


def test_warmup_then_cosine_spans_the_remaining_steps():
    got = ours(cfg_for("cosine", warmup_epochs=2))
    warm = 2 * SPE
    for s in range(warm):  # each group ramps towards its own base lr
        assert got[s] == pytest.approx([lr * (s + 1) / warm for lr in LRS])
    opt = optimizer()
    ref = torch_sched.CosineAnnealingLR(opt, T_max=TOTAL - warm)
    for s in range(warm, TOTAL):
        assert got[s] == pytest.approx([g["lr"] for g in opt.param_groups], rel=1e-9)
        opt.step()
        ref.step()


def test_warmup_then_linear_is_triangular():
    lrs = [row[0] for row in ours(cfg_for("linear", warmup_epochs=3), lrs=(1.0,))]
    peak = lrs.index(max(lrs))
    assert (peak, max(lrs)) == (3 * SPE - 1, pytest.approx(1.0))
    assert all(a < b for a, b in zip(lrs[:peak], lrs[1 : peak + 1], strict=True))
    assert all(a > b for a, b in zip(lrs[peak + 1 :], lrs[peak + 2 :], strict=False))


def test_warmup_multiplies_epoch_schedules_which_still_change_at_epoch_boundaries():
    got = [row[0] for row in ours(cfg_for("step", warmup_epochs=0.5, step_size=1), lrs=(1.0,))]
    warm = round(0.5 * SPE)
    assert got[:warm] == pytest.approx([(s + 1) / warm for s in range(warm)])
    assert got[warm:SPE] == pytest.approx([1.0] * (SPE - warm))
    assert got[SPE : 2 * SPE] == pytest.approx([0.1] * SPE)  # the drop is at epoch 1, unshifted


def test_warmup_into_onecycle_ramps_to_its_start():
    lrs = [row[0] for row in ours(cfg_for("onecycle", warmup_epochs=1), lrs=(1.0,))]
    assert lrs[SPE - 1] == pytest.approx(1 / 25) == lrs[SPE]
    assert max(lrs) == pytest.approx(1.0, rel=1e-3)  # the peak falls between steps, as torch's


@pytest.mark.parametrize("name", schedule.SCHEDULES.names())
@pytest.mark.parametrize("warmup", [0.0, 1.5])
def test_every_schedule_stays_between_zero_and_base(name, warmup):
    lowest = 1 / 25 / 1e4 if name == "onecycle" and not warmup else 1e-12
    for row in ours(cfg_for(name, warmup_epochs=warmup, min_lr=0.01)):
        assert all(
            base * lowest * (1 - 1e-9) <= lr <= base * (1 + 1e-12)
            for lr, base in zip(row, LRS, strict=True)
        )


@pytest.mark.parametrize("name", schedule.SCHEDULES.names())
@pytest.mark.parametrize("stop", [3 * SPE + 4, 5 * SPE])  # mid-epoch; on a boundary
def test_state_dict_round_trip_continues_the_identical_sequence(name, stop):
    cfg = cfg_for(name, warmup_epochs=0.5, min_lr=0.001)
    opt = optimizer()
    sched = schedule.build(opt, cfg, SPE, EPOCHS)
    drive(sched, opt, 0, stop)
    state = json.loads(json.dumps(sched.state_dict(), allow_nan=False))
    straight = drive(sched, opt, stop, TOTAL)

    opt2 = optimizer()
    resumed = schedule.build(opt2, cfg, SPE, EPOCHS)
    resumed.load_state_dict(state)
    assert drive(resumed, opt2, stop, TOTAL) == straight


def test_plateau_resumes_mid_patience():
    cfg = cfg_for("plateau", patience=3)
    opt = optimizer()
    sched = schedule.build(opt, cfg, SPE, EPOCHS)
    for loss in (1.0, 0.5, 0.6, 0.6):  # two bad epochs: one more would not yet reduce
        sched.epoch_end({"val_loss": loss})
    state = sched.state_dict()
    assert (state["best"], state["bad_epochs"]) == (0.5, 2)
    resumed = schedule.build(optimizer(), cfg, SPE, EPOCHS)
    resumed.load_state_dict(state)
    for s in (sched, resumed):
        s.epoch_end({"val_loss": 0.6})
        assert s.lr == pytest.approx(0.1)
        s.epoch_end({"val_loss": 0.6})
        assert s.lr == pytest.approx(0.01)


def test_load_restores_base_lrs_even_if_the_optimizer_was_loaded_first():
    cfg = cfg_for("cosine")
    opt = optimizer()
    sched = schedule.build(opt, cfg, SPE, EPOCHS)
    drive(sched, opt, 0, 30)
    opt2 = optimizer()
    opt2.load_state_dict(opt.state_dict())  # groups now hold the decayed lr, not the base
    resumed = schedule.build(opt2, cfg, SPE, EPOCHS)
    resumed.load_state_dict(sched.state_dict())
    assert drive(resumed, opt2, 30, TOTAL) == drive(sched, opt, 30, TOTAL)


def test_scale_multiplies_every_group_from_now_on_and_persists():
    cfg = cfg_for("cosine")
    opts = [optimizer(), optimizer()]
    scaled, plain = (schedule.build(opt, cfg, SPE, EPOCHS) for opt in opts)
    drive(scaled, opts[0], 0, 10)
    drive(plain, opts[1], 0, 10)
    scaled.scale(0.5)
    assert scaled.lr == pytest.approx(plain.lr / 2)
    state = json.loads(json.dumps(scaled.state_dict()))
    halved = drive(scaled, opts[0], 10, TOTAL)
    unscaled = flat(drive(plain, opts[1], 10, TOTAL))
    assert flat(halved) == pytest.approx([lr / 2 for lr in unscaled])

    opt = optimizer()
    resumed = schedule.build(opt, cfg, SPE, EPOCHS)
    resumed.load_state_dict(state)
    assert drive(resumed, opt, 10, TOTAL) == halved


@pytest.mark.parametrize(
    "mode, values, reduced",
    [
        ("max", [0.5, 0.6, 0.7, 0.8], False),
        ("max", [0.5, 0.4, 0.4, 0.4], True),
        ("min", [0.5, 0.6, 0.7, 0.8], True),
    ],
)
def test_plateau_watches_its_monitor_in_its_mode(mode, values, reduced):
    sched = schedule.build(optimizer(), cfg_for("plateau", monitor="val_acc", mode=mode), SPE, 4)
    for v in values:
        sched.epoch_end({"val_acc": v, "val_loss": 0.0})  # val_loss never improves: ignored
    assert sched.lr == pytest.approx(0.01 if reduced else 0.1)


def test_plateau_names_a_missing_monitor():
    sched = schedule.build(optimizer(), cfg_for("plateau", monitor="val_acc"), SPE, 4)
    with pytest.raises(ConfigError, match="did you mean val_ac"):
        sched.epoch_end({"val_ac": 0.5})


def test_other_schedules_ignore_epoch_metrics():
    sched = schedule.build(optimizer(), cfg_for("constant"), SPE, 4)
    sched.epoch_end({})
    assert sched.lr == 0.1


def test_unknown_name_is_a_config_error_with_a_suggestion():
    with pytest.raises(ConfigError, match="did you mean cosine"):
        schedule.build(optimizer(), ScheduleConfig(name="cosin"), SPE, EPOCHS)


def test_gamma_defaults():
    assert schedule.gamma(ScheduleConfig(name="step")) == 0.1
    assert schedule.gamma(ScheduleConfig(name="exponential")) == 0.95
    assert schedule.gamma(ScheduleConfig(name="exponential", gamma=0.5)) == 0.5


def test_a_foreign_state_is_a_checkpoint_error():
    opt = optimizer()
    old = torch_sched.LambdaLR(opt, lambda step: 1.0).state_dict()
    with pytest.raises(CheckpointError, match="schedule state"):
        schedule.build(opt, cfg_for("cosine"), SPE, EPOCHS).load_state_dict(old)
    state = schedule.build(optimizer((0.1,)), cfg_for("cosine"), SPE, EPOCHS).state_dict()
    with pytest.raises(CheckpointError, match="1 param groups, optimizer 2"):
        schedule.build(opt, cfg_for("cosine"), SPE, EPOCHS).load_state_dict(state)


@pytest.mark.parametrize("kind", ["sgd", "adam"])
def test_onecycle_cycles_momentum_as_torch_does(kind):
    """SGD's momentum or Adam's beta1 runs 0.95 -> 0.85 while the lr rises, then back."""

    def make():
        params = [torch.nn.Parameter(torch.zeros(1))]
        if kind == "sgd":
            return torch.optim.SGD(params, lr=0.1, momentum=0.9)
        return torch.optim.Adam(params, lr=0.1, betas=(0.9, 0.99))

    def momentum(opt):
        group = opt.param_groups[0]
        return group["momentum"] if kind == "sgd" else group["betas"][0]

    theirs_opt, ours_opt = make(), make()
    theirs = torch_sched.OneCycleLR(theirs_opt, max_lr=0.1, total_steps=TOTAL, pct_start=0.3)
    ours = schedule.build(ours_opt, cfg_for("onecycle"), SPE, EPOCHS)
    want, got = [], []
    for _ in range(TOTAL):
        want.append(momentum(theirs_opt))
        got.append(momentum(ours_opt))
        for opt, sched in ((theirs_opt, theirs), (ours_opt, ours)):
            opt.step()
            sched.step()
    assert min(got) == pytest.approx(0.85, abs=1e-3) and got[0] == pytest.approx(0.95)
    assert got == pytest.approx(want, rel=1e-9)
    if kind == "adam":
        assert ours_opt.param_groups[0]["betas"][1] == 0.99  # beta2 untouched


def test_cycle_momentum_off_keeps_the_optimizers_momentum():
    opt = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=0.1, momentum=0.9)
    sched = schedule.build(opt, cfg_for("onecycle", cycle_momentum=False), SPE, EPOCHS)
    for _ in range(TOTAL // 2):
        opt.step()
        sched.step()
    assert opt.param_groups[0]["momentum"] == 0.9
