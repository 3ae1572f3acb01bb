import sys

from captum_prune.cli import main

sys.exit(main())
