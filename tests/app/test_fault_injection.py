"""Fault injection: ``hbm fit --out EXISTING`` killed at random moments never leaves a mixed run.

20 trials of real ``hbm fit`` processes on a tiny cohort (6 users x 60 days, 2 chains x 100 +
100), each killed by SIGINT, SIGTERM or SIGKILL at a moment drawn from a seeded RNG inside one
of the phases load, compile, pilot, sampling and export (``hbm fit`` prints each phase as it
starts on stderr, the writing of the run folder as ``write``; the delay after it is drawn within
that phase's observed length, for the writing up to past its end). After every
trial the folder must hold either the previous run, byte for byte, or the new run complete, each
verified by hbm's manifest check *and* by this test's own sha256 of every file against the
manifest's listing; never anything else. SIGINT and SIGTERM must exit 130 / 143 with a one-line
message and leave nothing beside the folder; SIGKILL may leave its staged folder, hidden, which
the next fit that reaches the export removes.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import os
import signal
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from operator import itemgetter
from pathlib import Path

import numpy as np
import pytest

from hbm.results import io

from ..conftest import REPO

pytestmark = [pytest.mark.ci_stat, pytest.mark.fits]

ENV = {**os.environ, "PYTHONPATH": str(REPO)}
PHASES = ("load", "compile", "pilot", "sample", "export")
SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGKILL)
TRIALS = 20
SAMPLER = ["--chains", "2", "--tune", "100", "--draws", "100"]
#: First guesses of each phase's length (s), replaced by what the trials observe.
GUESS = {"load": 3.0, "compile": 2.0, "pilot": 0.3, "sample": 0.3, "diagnostics": 0.2}
GUESS |= {"export": 0.4, "write": 0.4}  # export: the tables; write: the files, manifest, swap


def _hbm(*args: str) -> list[str]:
    return [sys.executable, "-m", "hbm.app.cli", *args]


def _hashes(d: Path) -> dict[str, str]:
    return {
        p.relative_to(d).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(d.rglob("*"))
        if p.is_file()
    }


def _own_check(run: Path) -> dict[str, str]:
    """The test's own check: every file's sha256 equals manifest.json's listing (read as JSON)."""
    found = _hashes(run)
    listed = json.loads((run / io.MANIFEST_FILE).read_text())["files"]
    found.pop(io.MANIFEST_FILE)
    assert found == {name: entry["sha256"] for name, entry in listed.items()}, run
    assert all(entry["size"] == (run / n).stat().st_size for n, entry in listed.items())
    return found


class Trial:
    """One ``hbm fit`` process, its stderr lines timed by a reader thread."""

    def __init__(self, diary: Path, out: Path, seed: int) -> None:
        cmd = _hbm("fit", str(diary), "--out", str(out), *SAMPLER, "--seed", str(seed))
        self.started = time.perf_counter()
        self.proc = subprocess.Popen(
            cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, env=ENV, cwd=REPO
        )
        self.lines: list[tuple[float, str]] = [(self.started, "phase: start")]
        self.reader = threading.Thread(target=self._read, daemon=True)
        self.reader.start()

    def _read(self) -> None:
        assert self.proc.stderr is not None
        for line in self.proc.stderr:
            self.lines.append((time.perf_counter(), line.rstrip("\n")))

    def phase_now(self) -> str:
        return [s for _, s in self.lines if s.startswith("phase: ")][-1].removeprefix("phase: ")

    def wait_for(self, phase: str, timeout: float = 120) -> float | None:
        """When ``phase`` started; ``None`` if the process ended first."""
        end = time.perf_counter() + timeout
        while time.perf_counter() < end:
            for t, line in list(self.lines):
                if line == f"phase: {phase}":
                    return t
            if self.proc.poll() is not None:
                return None
            time.sleep(0.005)
        raise AssertionError(f"phase {phase} did not start within {timeout} s")

    def durations(self) -> dict[str, float]:
        marks = [(t, s.removeprefix("phase: ")) for t, s in self.lines if s.startswith("phase: ")]
        return {a: t2 - t1 for (t1, a), (t2, _) in itertools.pairwise(marks)}


WORKERS = 2  # two folders, each with its own run, killed in turn: the trials run in two lanes


@pytest.fixture(scope="module")
def cohort(tmp_path_factory):
    d = tmp_path_factory.mktemp("faults")
    diary = d / "diary.csv"
    subprocess.run(
        _hbm("simulate", "--users", "6", "--days", "60", "--seed", "5", "--out", str(diary)),
        check=True,
        env=ENV,
        cwd=REPO,
        capture_output=True,
    )
    runs = [d / f"lane{k}" / "run" for k in range(WORKERS)]
    for k, run in enumerate(runs):
        args = ["fit", str(diary), "--out", str(run), *SAMPLER, "--seed", str(k), "--no-progress"]
        subprocess.run(_hbm(*args), check=True, env=ENV, cwd=REPO, capture_output=True)
    return diary, runs


def _outcome(run: Path, previous: dict[str, str], seed: int) -> str:
    """``"old"`` or ``"new"`` (complete), each verified twice; anything else fails the test."""
    io.check_run_dir(run)  # hbm's manifest verifier
    found = _own_check(run)  # and the test's own
    if found == previous:
        return "old"
    info = json.loads((run / io.RUN_FILE).read_text())
    assert info["seed"] == seed and "finished" in info, "a run that is neither old nor new"
    assert sorted(found) == sorted([*io.RUN_FILES, io.CONFIG_FILE]), sorted(found)
    return "new"


def _beside(run: Path) -> list[str]:
    return sorted(p.name for p in run.parent.iterdir() if p.name.startswith(f".{run.name}."))


def _trial(i: int, diary: Path, run: Path, fraction: float, lane: dict) -> dict:
    """Trial ``i``: start a fit over ``run``, signal it in its phase, check what it left."""
    target, sig, seed = PHASES[i % len(PHASES)], SIGNALS[i % len(SIGNALS)], 100 + i
    # two of the four export trials (SIGINT, SIGKILL) aim at its writing: the staged folder's
    # files, its manifest and the swap
    marker = "write" if i in (9, 14) else target
    trial = Trial(diary, run, seed)
    start = trial.wait_for(marker)
    hit, sent = "finished", None
    if start is not None:
        # within the phase; for the writing up to past its end, where the new run is swapped in
        spread = 1.45 if marker == "write" else 0.65
        delay = (0.05 + spread * fraction) * lane["estimate"][marker]
        time.sleep(max(0.0, start + delay - time.perf_counter()))
        hit, sent = trial.phase_now(), time.perf_counter()
        trial.proc.send_signal(sig)
    code = trial.proc.wait(timeout=60)
    ended = time.perf_counter()
    trial.reader.join(timeout=10)
    assert trial.proc.stderr is not None
    trial.proc.stderr.close()
    lane["estimate"].update(trial.durations())
    lines = [s for _, s in trial.lines]
    message = [t for t, s in trial.lines if s.startswith("hbm fit: interrupted by")]
    outcome = _outcome(run, lane["previous"], seed)
    if outcome == "new":
        lane["previous"] = {k: v for k, v in _hashes(run).items() if k != io.MANIFEST_FILE}
    assert not [p for p in run.rglob("*") if p.name.startswith(".")], "temp files in the run"
    if sig == signal.SIGKILL and sent is not None:
        assert code == -signal.SIGKILL
        lane["killed"].add(trial.proc.pid)
    elif sent is not None:
        assert code in (128 + sig, 0), lines  # 0: the fit had finished as the signal came
        if code:  # one line, and nothing else (no traceback, no warning)
            said = [s for s in lines[1:] if not s.startswith("phase: ")]
            assert len(said) == 1 and said[0].startswith("hbm fit: interrupted by"), lines
    beside = _beside(run)
    stale = {int(n.split(".partial-")[1].split("-")[0]) for n in beside if ".partial-" in n}
    assert stale <= lane["killed"] and all(".partial-" in n for n in beside), beside
    return {
        "trial": i,
        "signal": signal.Signals(sig).name,
        "target": target,
        "marker": marker,
        "hit": hit,
        "exit": code,
        "outcome": outcome,
        "stop_s": round(ended - sent, 3) if sent else None,
        "message_s": round(message[0] - sent, 3) if message and sent else None,
        "left_beside": len(beside),
    }


def test_fit_killed_at_random_moments_leaves_the_old_run_or_the_new_one(cohort):
    diary, runs = cohort
    fractions = np.random.default_rng(20261203).uniform(size=TRIALS)
    lanes = [
        {"estimate": dict(GUESS), "previous": _own_check(run), "killed": set()} for run in runs
    ]

    def lane(k: int) -> list[dict]:
        return [
            _trial(i, diary, runs[k], float(fractions[i]), lanes[k])
            for i in range(k, TRIALS, WORKERS)
        ]

    t0 = time.perf_counter()
    with ThreadPoolExecutor(WORKERS) as pool:
        rows = sorted(
            (r for rs in pool.map(lane, range(WORKERS)) for r in rs), key=itemgetter("trial")
        )
    seconds = time.perf_counter() - t0
    print(f"\nfault injection: {TRIALS} trials in {seconds:.0f} s")
    for row in rows:
        print(json.dumps(row))
    report = os.environ.get("HBM_FAULT_REPORT")
    if report:
        Path(report).write_text(json.dumps({"seconds": seconds, "trials": rows}, indent=1))
    hit = {"export" if r["hit"] == "write" else r["hit"] for r in rows}
    assert set(PHASES) <= hit, f"phases hit: {sorted(hit)}"
    assert {r["outcome"] for r in rows} <= {"old", "new"}
