#!/usr/bin/env python
"""Shim: `python scripts/bench.py ...` is `lit-regularize bench ...`."""
import sys

from lit_regularize.bench import main

sys.exit(main())
