"""Optuna studies over run(): one job per module.

space      the search-space YAML language: parse, check, suggest
storage    storage URLs, opening storages (heartbeats), samplers, pruners scaled to the epoch budget
study      the Sweep every worker gets, open/resume checks, counting, the refit of the best trial
objective  one run() per trial (k-fold: kfold.evaluate_folds), validation only, pruning callback
workers    placements, worker processes (python -m lit_regularize.sweeps.workers), dead-worker reaping
report     per-trial lines, leaderboard, figures, warnings, report.md

Importing this package imports none of them (the CLI's --help stays fast).
"""
