"""A watchdog that takes a local Ray instance down with the driver that started it.

When ``--executor ray`` starts its own Ray instance (no ``--address``) and the driver is
killed (SIGKILL, the OOM killer), Ray stops the driver's tasks by itself (~2 s), and
its GCS and raylet share the driver's fate, but the raylet's agents
(``ray::DashboardAgent``, ``ray::RuntimeEnvAgent``, ~80 MB each) lived on as orphans for
2-3 minutes (measured with Ray 2.60). This process, started by the driver before
``ray.init``, notes the driver's descendants once a second; when the pipe from the driver
closes without the word ``done`` (the driver died), it SIGKILLs every one still alive
(same pid and start time) and their children. After a clean ``ray.shutdown()`` the driver
writes ``done`` and the watchdog exits doing nothing.

Linux only (it reads ``/proc``); elsewhere :func:`start` returns None. Run as a script
(``python -I reaper.py PID``): standard library only, no fer-video import, ~20 ms of CPU.
"""
from __future__ import annotations

import os
import select
import signal
import subprocess
import sys
from pathlib import Path
from typing import Optional

POLL_S = 1.0


def _table() -> dict[int, tuple[int, str]]:
    """pid -> (parent pid, start time in clock ticks) for every process."""
    out = {}
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        try:
            stat = open(f"/proc/{name}/stat", "rb").read().decode("ascii", "replace")
        except OSError:
            continue
        fields = stat[stat.rindex(")") + 2:].split()   # after "pid (comm) "
        if fields[0] != "Z":
            out[int(name)] = (int(fields[1]), fields[19])
    return out


def _descendants(roots: dict[int, str], table: dict[int, tuple[int, str]]) -> dict[int, str]:
    """Every process below ``roots`` (pid -> start time), the roots left out."""
    found: dict[int, str] = {}
    todo = [p for p, started in roots.items() if table.get(p, (0, ""))[1] == started]
    while todo:
        parent = todo.pop()
        for child, (ppid, started) in table.items():
            if ppid == parent and child not in found and child not in roots:
                found[child] = started
                todo.append(child)
    return found


def watch(driver_pid: int, stream) -> int:
    """The watchdog's loop (``stream``: the pipe from the driver)."""
    me = os.getpid()
    table = _table()
    if driver_pid not in table:
        return 0
    driver = {driver_pid: table[driver_pid][1]}
    known: dict[int, str] = {}
    fd = stream.fileno()
    while True:
        ready, _, _ = select.select([fd], [], [], POLL_S)
        if ready:
            data = os.read(fd, 64)
            if data.startswith(b"done"):
                return 0
            if not data:
                break                              # EOF without "done": the driver died
        table = _table()
        known.update(_descendants(driver, table))
        known.pop(me, None)
    # The driver's children are orphans now (their parent pid is 1): follow them from
    # what was known, then kill what is still the same process.
    table = _table()
    known.update(_descendants(known, table))
    known.pop(me, None)
    for pid, started in known.items():
        if table.get(pid, (0, ""))[1] == started:
            try:
                os.kill(pid, signal.SIGKILL)
            except OSError:
                pass
    return 0


class Reaper:
    """The driver's end: :meth:`done` after a clean shutdown."""

    def __init__(self, proc: subprocess.Popen):
        self._proc = proc

    def done(self) -> None:
        try:
            self._proc.stdin.write(b"done\n")
            self._proc.stdin.close()
            self._proc.wait(timeout=10)
        except (OSError, ValueError, subprocess.TimeoutExpired):
            pass


def start() -> Optional[Reaper]:
    """Start the watchdog for this process (None where /proc is missing)."""
    if not sys.platform.startswith("linux") or not os.path.isdir("/proc/self"):
        return None
    proc = subprocess.Popen([sys.executable, "-I", str(Path(__file__).resolve()), str(os.getpid())],
                            stdin=subprocess.PIPE, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL, start_new_session=True)
    return Reaper(proc)


if __name__ == "__main__":
    signal.signal(signal.SIGINT, signal.SIG_IGN)     # Ctrl-C is the driver's to handle
    sys.exit(watch(int(sys.argv[1]), sys.stdin.buffer))
