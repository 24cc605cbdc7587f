"""``hbm.inference.sbc.in_recycled_process``: results come back, children are replaced, and a
child never outlives its parent."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from hbm.inference import sbc

REPO = Path(__file__).resolve().parents[2]


def _children(pid: int) -> list[int]:
    found = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == pid:
            found.append(int(stat.parent.name))
    return found


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


def test_results_come_back_and_the_child_is_replaced(monkeypatch):
    monkeypatch.setattr(sbc, "RECYCLE_AFTER", 2)
    monkeypatch.setattr(sbc, "_POOL", None)
    try:
        pids = [sbc.in_recycled_process(os.getpid) for _ in range(4)]
    finally:
        sbc.stop_child()
    assert os.getpid() not in pids
    assert pids[0] == pids[1] != pids[2] == pids[3]  # a fresh child after 2 calls


def test_a_child_ends_with_its_killed_parent():
    code = "import time; from hbm.inference.sbc import in_recycled_process as r; r(time.sleep, 120)"
    parent = subprocess.Popen([sys.executable, "-c", code], cwd=REPO)
    try:
        deadline = time.monotonic() + 60
        children: list[int] = []
        while time.monotonic() < deadline and not children:
            time.sleep(0.2)
            # the pool's child, not multiprocessing's resource tracker: it runs spawn_main
            children = [
                c
                for c in _children(parent.pid)
                if b"spawn_main" in Path(f"/proc/{c}/cmdline").read_bytes()
            ]
        assert children, "the child process did not start"
        parent.send_signal(signal.SIGKILL)
        parent.wait()
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and any(_alive(c) for c in children):
            time.sleep(0.2)
        assert not any(_alive(c) for c in children)
    finally:
        parent.kill()
