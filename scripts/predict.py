#!/usr/bin/env python
"""Shim: `python scripts/predict.py ...` is `lit-regularize predict ...`."""
import sys

from lit_regularize.cli.predict import main

sys.exit(main())
