"""The shipped configs (presets, experiments, comparison studies, the default search space) as package data."""
