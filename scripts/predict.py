"""Classify review texts or images with a trained run (see lit_regularize/cli_predict.py)."""
import sys

from lit_regularize.cli_predict import main

sys.exit(main())
