"""The files a sweep directory holds besides its trials' run directories: the sweep writes
them (cnnlab.sweeps), `cnnlab report` shows them (cnnlab.report.sweep).

    <sweep dir>/
      sweep.json        which study: {"study": NAME, "storage": URL or journal file}
      spec.yaml         the spec as run (CLI flags applied, paths absolute)
      base.yaml         the resolved base config every trial starts from
      study.journal     the Optuna study (JournalStorage), unless --storage names another
      trials.csv        one row per trial: number, state, value, parameters, run, error
      best.yaml         the best trial's full config (cnnlab train -c best.yaml)
      history.png importance.png slice.png parallel.png     Optuna's plots (matplotlib)
      workers/          each worker process's log
      <stamp>-trial-0003/                  a trial's run (repeats: 1)
      trial-0003/<stamp>-trial-0003-seed0/  a trial's runs, one per seed, and group.json
"""

from __future__ import annotations

SWEEP_JSON = "sweep.json"
SPEC_YAML = "spec.yaml"
BASE_YAML = "base.yaml"
JOURNAL = "study.journal"
TRIALS_CSV = "trials.csv"
BEST_YAML = "best.yaml"
WORKER_LOGS = "workers"
GROUP_JSON = "group.json"  # a group of seeds: each metric's mean, std, min, max, n; its runs
# (file, caption) of the plots, in the order a page shows them.
PLOTS = (
    ("history.png", "optimisation history: each trial's objective and the best so far"),
    ("importance.png", "parameter importances (PED-ANOVA): how much each key moved the objective"),
    ("slice.png", "the objective against each parameter"),
    ("parallel.png", "parallel coordinates: every trial's parameters and objective"),
)
