"""Comparison studies (lit-regularize compare NAME)."""
