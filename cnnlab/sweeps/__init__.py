"""Sweeps and repeats on Optuna: a spec (search space, sampler, pruner, objective), its study
(storage, budget shared by worker processes), workers whose trials are ordinary runs, repeats
over seeds (mean ± std), and what a sweep found (trials.csv, best.yaml, plots).

cnnlab.sweep(spec) (in cnnlab/__init__.py) and `cnnlab sweep` start here: launch.run_sweep.
"""
