"""Run one command as a child of this process and write its peak resident set size (MiB) to
``<out>.<RANK>`` -- what ``/usr/bin/time -v`` reports, one file per ``torchrun`` rank.

    torchrun --nproc_per_node 2 benchmarks/_rank_peak.py OUT -- lmms-eval ...

The child inherits ``torchrun``'s rendezvous variables (``RANK``, ``WORLD_SIZE``, ...), so it is the
rank; its peak is read from the kernel (``wait4``'s ``ru_maxrss``: the process's whole life).
"""

from __future__ import annotations

import os
import subprocess
import sys


def main() -> int:
    out, sep, *cmd = sys.argv[1:]
    if sep != "--" or not cmd:
        raise SystemExit("usage: _rank_peak.py OUT -- COMMAND ...")
    proc = subprocess.Popen(cmd)
    _, status, usage = os.wait4(proc.pid, 0)
    with open(f"{out}.{os.environ.get('RANK', '0')}", "w") as handle:
        handle.write(f"{usage.ru_maxrss / 1024:.1f}\n")
    return os.waitstatus_to_exitcode(status)


if __name__ == "__main__":
    sys.exit(main())
