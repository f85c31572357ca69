"""The notebooks' reference numbers (package data for lit-regularize reproduce)."""
