"""``python -m tandem.rollout.router``."""

import sys

from tandem.rollout.router.server import main

sys.exit(main())
