#!/usr/bin/env python
"""Shim: `python scripts/fit.py ...` is `lit-regularize fit ...`."""
import sys

from lit_regularize.cli.fit import main

sys.exit(main())
