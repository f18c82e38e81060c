import sys

from ctseg_core.cli import main

sys.exit(main())
