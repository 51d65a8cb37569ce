"""The pause container (``registry.k8s.io/pause``): sleep until SIGTERM or SIGINT, then exit 0.

Upstream's pause.c also reaps orphaned children as PID 1 of a shared PID namespace; kubewire pods do
not share a PID namespace with it, so only the waiting, the clean exit and ``-v`` are kept (and the
"should be the first process" warning is not printed). It imports
nothing beyond ``os``, ``signal`` and ``sys``: this is the cheapest process a pod can run.
"""

from __future__ import annotations

import os
import signal
import sys
from types import FrameType


def _shutdown(signum: int, _frame: FrameType | None) -> None:
    name = "Interrupt" if signum == signal.SIGINT else "Terminated"
    sys.stderr.write(f"Shutting down, got signal: {name}\n")
    sys.stderr.flush()
    os._exit(0)


def main() -> int:
    if any(arg.lower() == "-v" for arg in sys.argv[1:]):
        sys.stdout.write("pause.c v3.10\n")
        return 0
    signal.signal(signal.SIGTERM, _shutdown)
    signal.signal(signal.SIGINT, _shutdown)
    while True:
        signal.pause()


if __name__ == "__main__":
    sys.exit(main())
