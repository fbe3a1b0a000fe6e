"""The trial budget is shared through the storage: a trial taken after it was spent is a spare
(failed before it trains), retries and enqueued points do not use it up."""

from __future__ import annotations

import optuna
from optuna.trial import TrialState

from cnnlab.sweeps import study as studies
from cnnlab.sweeps.spec import Plan, Spec


def plan(**keys) -> Plan:
    spec = Spec.model_validate(
        {"name": "s", "space": {"optim.lr": {"type": "float", "low": 0.01, "high": 0.1}}, **keys}
    )
    return Plan(spec, {"run": {"dir": "runs"}})


def test_trials_beyond_the_budget_are_spares_whatever_order_they_end_in():
    study, p = optuna.create_study(), plan(sampler={"name": "random"}, trials=3)
    taken = [study.ask() for _ in range(5)]  # five workers asked at once
    within = [studies.within_budget(study, p, t.number) for t in taken]
    assert within == [True, True, True, False, False]
    for trial in reversed(taken[:3]):
        study.tell(trial, 1.0)
    assert not studies.work_left(study, p)


def test_a_retry_and_an_enqueued_trial_use_no_budget():
    study, p = optuna.create_study(), plan(sampler={"name": "random"}, trials=1)
    first = study.ask()
    first.suggest_float("optim.lr", 0.01, 0.1)
    frozen = study.get_trials(deepcopy=False)[0]
    assert studies.requeue(study, frozen, retries=2)  # its worker died
    assert study.get_trials(deepcopy=False)[0].state == TrialState.FAIL
    assert studies.work_left(study, p)  # the retry waits
    retry = study.ask()
    assert studies.within_budget(study, p, retry.number)
    assert studies.retry_of(study.get_trials(deepcopy=False)[retry.number]) == 0
    assert retry.params == first.params
    study.tell(retry, 1.0)
    study.enqueue_trial({"optim.lr": 0.05})
    assert studies.within_budget(study, p, study.ask().number)


def test_a_trial_is_retried_at_most_retries_times():
    study = optuna.create_study()
    study.ask()
    for attempt in range(3):
        trial = study.get_trials(deepcopy=False)[-1]
        assert studies.requeue(study, trial, retries=2) == (attempt < 2)
        if attempt < 2:
            study.ask()
    assert [t.state for t in study.get_trials()] == [TrialState.FAIL] * 3


def test_a_grid_runs_only_its_points(tmp_path):
    study = optuna.create_study()
    p = plan(
        sampler={"name": "grid"},
        space={"optim.lr": {"type": "categorical", "choices": [0.01, 0.02]}},
    )
    assert studies.enqueue_grid(study, p, tmp_path) == 2
    assert studies.enqueue_grid(study, p, tmp_path) == 0  # a second launch adds none
    numbers = [study.ask().number for _ in range(3)]
    assert [studies.within_budget(study, p, n) for n in numbers] == [True, True, False]
