import math

import pytest

from cnnlab.train.guard import DivergedError, check_loss


def test_finite_loss_passes():
    check_loss(2.3, step=1, lr=0.1)


@pytest.mark.parametrize("loss", [math.nan, math.inf])
def test_non_finite_loss_stops_with_step_lr_and_advice(loss):
    with pytest.raises(DivergedError) as e:
        check_loss(loss, step=412, lr=0.5)
    finding = e.value.divergence.finding()
    assert finding["kind"] == "diverged"
    assert "step 412" in finding["message"] and "lr 0.5" in finding["message"]
    assert "lr <= 0.05" in finding["advice"]
