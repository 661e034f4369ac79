"""``python -m labctl`` runs the labctl command."""

import sys

from labctl.cli.main import main

sys.exit(main())
