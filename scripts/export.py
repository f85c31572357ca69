#!/usr/bin/env python
"""Shim: `python scripts/export.py ...` is `lit-regularize export ...`."""
import sys

from lit_regularize.cli.predict import export_main

sys.exit(export_main())
