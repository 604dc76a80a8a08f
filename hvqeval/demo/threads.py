"""How many intra-op threads the demo's torch work gets: one per core other processes leave free.

torch's CPU kernels split each operation over one thread per core and wait for all of them at
its end. When another process keeps a core busy, the thread that shares that core is
descheduled and the others wait (spinning) for it after every operation. On a 2-core machine
with other work running, a level-1 training chunk of the demo's cards cost 3 to 12 times the
CPU time with 2 threads that it cost with 1 (docs/BENCHMARKS.md), which made the stages' first
steps, the floor the time budget cannot shrink, the largest part of a short run. So before each
step the demo counts the cores other processes kept busy since the step before and gives torch
one thread per core left, at least one; on an idle machine that is every core.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable

import psutil

# Other processes' load below this share of a core leaves the core to the demo (daemons, a
# shell); above it the core counts as busy.
BUSY_CORE = 0.25
MIN_INTERVAL = 0.5  # seconds: shorter intervals keep the last reading (too few clock ticks)


def threads_for(others: float, cores: int, most: int) -> int:
    """Threads for ``cores`` cores of which other processes keep ``others`` busy (in cores), at
    most ``most`` (torch's default) and at least 1."""
    busy = math.ceil(max(others - BUSY_CORE, 0.0))  # 0.3 of a core is a busy core, 0.2 is not
    return max(1, min(most, cores - busy))


class CoreShare:
    """The cores other processes used between two calls of ``threads``: the machine's busy CPU
    time (``psutil.cpu_times``) less this process's own (all its threads, and children waited
    for), over the wall-clock time between the calls."""

    def __init__(self, most: int, clock: Callable[[], float] = time.monotonic):
        self.most = most
        self.cores = psutil.cpu_count() or 1
        self.clock = clock
        self.others = 0.0  # cores busy with other processes over the last interval
        self.last = self.sample()

    def sample(self) -> tuple[float, float, float]:
        """(wall clock, the machine's busy CPU seconds, this process's CPU seconds)."""
        machine = psutil.cpu_times()
        # Guest time is already counted in user time; idle and I/O wait are not work.
        busy = sum(machine) - sum(
            getattr(machine, name, 0.0) for name in ("idle", "iowait", "guest", "guest_nice")
        )
        own = psutil.Process().cpu_times()
        mine = own.user + own.system + own.children_user + own.children_system
        return self.clock(), busy, mine

    def threads(self) -> int:
        """Threads for the next step, from the other processes' load since the last reading."""
        now = self.sample()
        interval = now[0] - self.last[0]
        if interval >= MIN_INTERVAL:
            others = (now[1] - self.last[1]) - (now[2] - self.last[2])
            self.others = min(max(others / interval, 0.0), float(self.cores))
            self.last = now
        return threads_for(self.others, self.cores, self.most)
