#!/usr/bin/env python
"""Shim: `python scripts/compare.py ...` is `lit-regularize compare ...`."""
import sys

from lit_regularize.cli.compare import main

sys.exit(main())
