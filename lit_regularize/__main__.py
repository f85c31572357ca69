"""python -m lit_regularize COMMAND ..."""
import sys

from lit_regularize.cli import main

sys.exit(main())
