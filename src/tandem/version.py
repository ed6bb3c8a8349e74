"""Version strings: Tandem's own, and the DRUM version it is compatible with."""

from __future__ import annotations

__version__ = "0.1.0"

#: The DRUM release whose HTTP contract Tandem implements. It is what ``X-Drum-Version`` and
#: ``/info/`` report, because DataRobot's prediction gateway decides on gateway-side chat
#: monitoring from that header (DRUM >= 1.17.13 stopped reporting chat itself).
DRUM_COMPAT_VERSION = "1.18.1"
