"""Export a run's model as TorchScript or ONNX (see lit_regularize/export.py)."""
import sys

from lit_regularize.cli_predict import export_main

sys.exit(export_main())
