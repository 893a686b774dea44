"""Where a machine's CPU went while a benchmark level ran: every process, sampled.

`MachineMeter(server_pids, is_server)` samples /proc every second in a thread between
`start()` and `stop()`, so processes that start or end during the level are counted too,
and returns CPU-seconds per group: the servers (given pids, plus processes `is_server`
accepts, e.g. one database's PostgreSQL backends), this process (the load generator),
other processes at normal priority, other processes at lower priority (nice > 0: other
people's batch jobs), and the machine's idle time.  The sampling thread's own CPU is
reported apart from the load generator's.  What no sample saw (kernel threads aside, a
process that lived less than one interval) is the remainder.  Linux only.
"""

from __future__ import annotations

import os
import threading
import time
from pathlib import Path
from typing import Callable

TICK = os.sysconf("SC_CLK_TCK")


def _processes() -> dict[int, tuple[float, int, float]]:
    """pid -> (CPU-seconds so far, nice, start time in seconds since boot)."""
    out = {}
    for entry in os.scandir("/proc"):
        if entry.name.isdigit():
            try:
                fields = Path(f"/proc/{entry.name}/stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            out[int(entry.name)] = ((int(fields[11]) + int(fields[12])) / TICK, int(fields[16]),
                                    int(fields[19]) / TICK)
    return out


def _idle_and_total() -> tuple[float, float]:
    fields = [int(x) for x in Path("/proc/stat").read_text().splitlines()[0].split()[1:]]
    return (fields[3] + fields[4]) / TICK, sum(fields[:8]) / TICK


def _uptime() -> float:
    return float(Path("/proc/uptime").read_text().split()[0])


class MachineMeter:
    def __init__(self, server_pids: list[int], is_server: Callable[[int], bool], interval: float = 1.0):
        self.server_pids, self.is_server, self.interval = set(server_pids), is_server, interval
        self._first: dict[int, float] = {}
        self._last: dict[int, tuple[float, int]] = {}
        self._servers: set[int] = set()
        self._stop = threading.Event()
        self._own = 0.0                          # the sampling thread's CPU-seconds
        self._thread: threading.Thread | None = None

    def _sample(self) -> None:
        for pid, (cpu, nice, started) in _processes().items():
            if pid not in self._first:
                self._first[pid] = 0.0 if started >= self._t0 else cpu   # born during the level: all of it
                if pid in self.server_pids or self.is_server(pid):
                    self._servers.add(pid)
            self._last[pid] = (cpu, nice)

    def start(self) -> None:
        self._t0 = _uptime()
        self._idle0, self._total0 = _idle_and_total()
        self._sample()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            t = time.thread_time()
            self._sample()
            self._own += time.thread_time() - t

    def stop(self) -> dict[str, float]:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
        self._sample()
        idle1, total1 = _idle_and_total()
        groups = {"servers": 0.0, "load generator": 0.0, "other processes": 0.0, "other, niced": 0.0}
        me = os.getpid()
        for pid, (cpu, nice) in self._last.items():
            used = cpu - self._first[pid]
            if pid in self._servers:
                groups["servers"] += used
            elif pid == me:
                groups["load generator"] += used - self._own
            elif nice > 0:
                groups["other, niced"] += used
            else:
                groups["other processes"] += used
        groups["meter"] = self._own
        groups["idle"] = idle1 - self._idle0
        groups["machine"] = total1 - self._total0
        groups["unseen"] = groups["machine"] - sum(v for k, v in groups.items() if k != "machine")
        return groups
