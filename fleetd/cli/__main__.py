"""`python -m fleetd.cli`: the same as the `fleetd` command."""

import sys

from fleetd.cli.commands import main

sys.exit(main())
