"""Optuna studies over run(): one job per module.

space      the search-space YAML language: parse, check, suggest
storage    storage URLs, opening storages (heartbeats), samplers, pruners scaled to the epoch budget
study      the Sweep every worker gets, open/resume checks, counting, the refit of the best trial
objective  one run() per trial (k-fold: kfold.evaluate_folds), validation only, pruning callback; with
           --objectives val/loss,params (best val/loss, parameter count) and no pruning
confirm    --confirm-top K --confirm-seeds N: re-train the K best trials with new seeds, mean ± 95 % CI, verdict
workers    placements, worker processes (python -m lit_regularize.sweeps.workers), dead-worker reaping
report     per-trial lines, leaderboard, figures (Pareto front), warnings, report.md

Importing this package imports none of them (the CLI's --help stays fast).
"""
