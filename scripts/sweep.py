import sys
from lit_regularize.cli.sweep import main
sys.exit(main())
