"""``python -m kubewire.agents.dns``: what the coredns image runs (see :mod:`kubewire.agents.dns.app`)."""

import sys

from kubewire.agents.dns.app import main

sys.exit(main())
