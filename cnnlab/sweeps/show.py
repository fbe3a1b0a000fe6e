"""What a sweep found: its trials as a table (trials.csv, `cnnlab sweep show`), the best
trial's config (best.yaml), parameter importances and Optuna's plots (PNGs in the sweep dir).
"""

from __future__ import annotations

import json
import warnings
from pathlib import Path
from typing import Any

import optuna
import pandas as pd
from optuna.trial import FrozenTrial, TrialState

from cnnlab.atomic import atomic_path, write_text_atomic
from cnnlab.config import dump_yaml, load_config
from cnnlab.errors import ConfigError
from cnnlab.sweeps import study as studies
from cnnlab.sweeps.space import config_values, overrides
from cnnlab.sweeps.spec import Plan
from cnnlab.track.sweepdir import BEST_YAML, PLOTS, SWEEP_JSON, TRIALS_CSV

STATES = {
    TrialState.COMPLETE: "complete",
    TrialState.PRUNED: "pruned",
    TrialState.FAIL: "failed",
    TrialState.RUNNING: "running",
    TrialState.WAITING: "waiting",
}


def trials(study: optuna.Study) -> list[FrozenTrial]:
    """The study's trials without the spares (see sweeps.study)."""
    return [t for t in study.get_trials(deepcopy=False) if not t.user_attrs.get(studies.SPARE)]


def frame(study: optuna.Study, plan: Plan) -> pd.DataFrame:
    """One row per trial: trial, state, the objective (named by its metric), the sampled
    config keys, the run's status, its folder, seconds, the trial it retries, its error."""
    spec, found = plan.spec, trials(study)
    metric = spec.objective.metric
    retried = retried_numbers(study)
    rows = []
    for t in found:
        error = failure(t, retried) if t.state == TrialState.FAIL else None
        seconds = t.duration.total_seconds() if t.duration is not None else None
        rows.append(
            {
                "trial": t.number,
                "state": STATES.get(t.state, t.state.name.lower()),
                metric: t.value,
                # a waiting grid point has its values as the enqueued params only
                **config_values(spec.space, t.params or t.system_attrs.get("fixed_params", {})),
                "status": t.user_attrs.get(studies.STATUS),
                "run": t.user_attrs.get(studies.RUN),
                "seconds": None if seconds is None else round(seconds, 1),
                "retry_of": studies.retry_of(t),
                "error": error,
            }
        )
    columns = ["trial", "state", metric, *spec.space, "status", "run", "seconds", "retry_of"]
    table = pd.DataFrame(rows, columns=[*columns, "error"])
    table["retry_of"] = table["retry_of"].astype("Int64")  # a trial number, or empty
    for key in spec.space:  # lists and mappings (choices of augment.train) as their JSON
        table[key] = table[key].map(lambda v: json.dumps(v) if isinstance(v, list | dict) else v)
    return table


def failure(trial: FrozenTrial, retried: set[int]) -> str:
    """Why a FAIL trial failed: its error, or its end (Ctrl-C, a worker that died)."""
    error = trial.user_attrs.get(studies.ERROR)
    if error is not None:
        return error
    why = (
        "interrupted"
        if trial.user_attrs.get(studies.STATUS) == "interrupted"
        else ("its worker stopped")
    )
    return why + (", re-queued" if trial.number in retried else "")


def retried_numbers(study: optuna.Study) -> set[int]:
    """Trials that a later trial re-runs."""
    found = study.get_trials(deepcopy=False)
    return {n for t in found for n in t.system_attrs.get("retry_history", [])}


def best(study: optuna.Study) -> FrozenTrial | None:
    done = [t for t in trials(study) if t.state == TrialState.COMPLETE]
    if not done:
        return None
    return study.best_trial


def best_yaml(study: optuna.Study, plan: Plan) -> str | None:
    """The best trial's full config (the base with its values), runnable with
    `cnnlab train -c best.yaml`; None before any trial completed."""
    trial = best(study)
    if trial is None:
        return None
    values = config_values(plan.spec.space, trial.params)
    config = load_config(base=plan.base, overrides=overrides(values))
    shown = ", ".join(f"{k}={v}" for k, v in values.items())
    return (
        f"# sweep {plan.spec.name}, best trial {trial.number}: {plan.spec.objective.metric} "
        f"{trial.value:.6g} ({shown})\n{dump_yaml(config)}"
    )


def write_tables(study: optuna.Study, plan: Plan, sweep_dir: Path) -> None:
    """trials.csv and best.yaml, as of now (each trial's end rewrites them)."""
    with atomic_path(sweep_dir / TRIALS_CSV) as tmp:
        frame(study, plan).to_csv(tmp, index=False)
    text = best_yaml(study, plan)
    if text is not None:
        write_text_atomic(sweep_dir / BEST_YAML, text)


def importances(study: optuna.Study) -> dict[str, float]:
    """Each key's importance over the completed trials ({} below two of them, or when no key
    varied), by PED-ANOVA: milliseconds where fANOVA's random forest takes seconds, and it
    judges keys that only some trials have (a `when` condition)."""
    done = [t for t in trials(study) if t.state == TrialState.COMPLETE]
    if len(done) < 2:
        return {}
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return optuna.importance.get_param_importances(study, evaluator=_evaluator())
    except (ValueError, RuntimeError):
        return {}


def _evaluator() -> optuna.importance.PedAnovaImportanceEvaluator:
    return optuna.importance.PedAnovaImportanceEvaluator()


def write_plots(study: optuna.Study, sweep_dir: Path) -> list[Path]:
    """Optuna's matplotlib plots of the study as PNGs (those its trials allow)."""
    import matplotlib.pyplot as plt
    from optuna.visualization import matplotlib as plots

    draw = {
        "history.png": plots.plot_optimization_history,
        "importance.png": lambda s: plots.plot_param_importances(s, evaluator=_evaluator()),
        "slice.png": plots.plot_slice,
        "parallel.png": plots.plot_parallel_coordinate,
    }
    if sum(t.state == TrialState.COMPLETE for t in trials(study)) < 2:
        return []
    written = []
    for name, _ in PLOTS:
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                axes = draw[name](study)
        except (ValueError, RuntimeError):
            continue  # e.g. importances when no key varied
        figure = (axes.flat[0] if hasattr(axes, "flat") else axes).figure
        with atomic_path(sweep_dir / name) as tmp:
            figure.savefig(tmp, format="png", dpi=100, bbox_inches="tight")
        plt.close(figure)
        written.append(sweep_dir / name)
    return written


def open_sweep(sweep_dir: str | Path) -> tuple[optuna.Study, Plan, Path]:
    """The study of a sweep directory (its sweep.json names it)."""
    sweep_dir = Path(sweep_dir)
    record = sweep_dir / SWEEP_JSON
    if not record.is_file():
        raise ConfigError(f"{sweep_dir}: not a sweep directory (no {SWEEP_JSON})")
    try:
        where = json.loads(record.read_text())
        name, url = where["study"], where["storage"]
    except (ValueError, KeyError, TypeError) as e:
        raise ConfigError(f"{record}: unreadable ({e})") from None
    if "://" not in url and not Path(url).is_absolute():
        url = str(sweep_dir / url)
    study, plan = studies.load(studies.open_storage(url), name)
    return study, plan, sweep_dir


def summary_lines(study: optuna.Study, plan: Plan) -> list[str]:
    """Counts by state, the best trial and its values, the importances."""
    found = trials(study)
    counts: dict[str, int] = {}
    for t in found:
        state = STATES.get(t.state, t.state.name.lower())
        counts[state] = counts.get(state, 0) + 1
    lines = [f"{len(found)} trials: " + ", ".join(f"{n} {s}" for s, n in counts.items())]
    top = best(study)
    if top is not None:
        values = config_values(plan.spec.space, top.params)
        lines.append(
            f"best: trial {top.number}, {plan.spec.objective.metric} {top.value:.4f}"
            f" ({top.user_attrs.get(studies.RUN, '-')})"
        )
        lines += [f"  {k} = {_short(v)}" for k, v in values.items()]
    found_importances = importances(study)
    if found_importances:
        done = sum(t.state == TrialState.COMPLETE for t in found)
        shares = ", ".join(f"{k} {v:.2f}" for k, v in found_importances.items())
        lines.append(f"importance (PED-ANOVA over {done} complete trials): {shares}")
    return lines


def _short(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.4g}"
    text = json.dumps(value) if isinstance(value, list | dict) else str(value)
    return text if len(text) <= 60 else text[:59] + "…"


def sorted_frame(study: optuna.Study, plan: Plan) -> pd.DataFrame:
    """The table by objective (best first), then pruned, failed, running and waiting trials."""
    table = frame(study, plan)
    metric = plan.spec.objective.metric
    order = {"complete": 0, "pruned": 1, "failed": 2, "running": 3, "waiting": 4}
    table["_order"] = table["state"].map(order).fillna(5)
    ascending = plan.spec.objective.minimize
    table = table.sort_values(["_order", metric], ascending=[True, ascending], na_position="last")
    return table.drop(columns="_order")
