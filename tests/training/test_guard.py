import math

import pytest

from cnnlab.training.guard import MEDIAN_FLOOR, MIN_RECENT, RECENT, DivergedError, check_loss


def test_finite_losses_pass_and_fill_the_running_window():
    recent: list[float] = []
    for i in range(RECENT + 5):
        check_loss(2.3 - 0.01 * i, step=i, lr=0.1, recent=recent, spike_factor=10.0, num_classes=10)
    assert len(recent) == RECENT and recent[-1] == pytest.approx(2.3 - 0.01 * (RECENT + 4))


@pytest.mark.parametrize("loss", [math.nan, math.inf])
def test_non_finite_loss_stops_with_step_lr_and_advice(loss):
    with pytest.raises(DivergedError) as e:
        check_loss(loss, step=412, lr=0.5, recent=[], spike_factor=None, num_classes=10)
    finding = e.value.divergence.finding()
    assert finding["kind"] == "diverged" and finding["step"] == "412"
    assert "step 412" in finding["message"] and "lr 0.5" in finding["message"]
    assert "lr <= 0.05" in finding["advice"]


def test_a_spike_over_the_running_median_is_a_divergence():
    recent = [0.4, 0.3, 0.35, 0.3, 0.32]
    check_loss(
        2.9, step=50, lr=0.5, recent=list(recent), spike_factor=10.0, num_classes=10
    )  # 9x: tolerated
    with pytest.raises(DivergedError) as e:
        check_loss(
            3.3, step=60, lr=0.5, recent=list(recent), spike_factor=10.0, num_classes=10
        )  # 10.3x
    message = e.value.divergence.finding()["message"]
    assert (
        "jumped to 3.3 at step 60 with lr 0.5" in message and "its running median 0.32" in message
    )


def test_no_spike_verdict_before_enough_history_or_when_off():
    check_loss(
        4.0, step=3, lr=1.0, recent=[0.1] * (MIN_RECENT - 1), spike_factor=2.0, num_classes=10
    )
    check_loss(50.0, step=9, lr=1.0, recent=[0.1] * MIN_RECENT, spike_factor=None, num_classes=10)


def test_near_zero_medians_count_as_the_floor():
    """A memorised training set logs losses ~0.001; a wobble to 0.05 is not a divergence."""
    recent = [0.001] * MIN_RECENT
    check_loss(
        MEDIAN_FLOOR, step=100, lr=0.1, recent=list(recent), spike_factor=10.0, num_classes=10
    )
    with pytest.raises(DivergedError):
        check_loss(
            11 * MEDIAN_FLOOR,
            step=100,
            lr=0.1,
            recent=list(recent),
            spike_factor=10.0,
            num_classes=10,
        )


def test_a_loss_far_above_a_uniform_guess_diverges_from_the_first_check():
    """An absurd lr with BatchNorm can keep the loss finite but huge from step one on."""
    check_loss(20.0, step=10, lr=1e4, recent=[], spike_factor=10.0, num_classes=10)  # < 23.03
    with pytest.raises(DivergedError) as e:
        check_loss(7.7e14, step=10, lr=1e4, recent=[], spike_factor=10.0, num_classes=10)
    assert "uniform guess over 10 classes 2.303" in e.value.divergence.finding()["message"]
