"""The service under issue 22 (case 14): /health notices a changed or deleted run folder.

Run folders are written by hand (``write_run`` of test_service_rules); no fit runs.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

from fastapi.testclient import TestClient

from hbm import __version__
from hbm.app.cli import load_service_data
from hbm.app.service import WATCHED, create_app, folder_state, identify
from hbm.results import io

from .test_service_rules import write_run

ALL_WATCHED = (
    "fit.nc, run.json, diagnostics.json, profiles.json, users.csv, population.csv, weights.csv"
)


def _run(tmp_path: Path, name: str = "run-h") -> Path:
    d = tmp_path / name
    d.mkdir()
    return write_run(d)


def serve(run_dir: Path) -> TestClient:
    return TestClient(create_app(load_service_data(run_dir)))


def _health(state: str, detail: str) -> dict[str, object]:
    return {
        "status": state,
        "version": __version__,
        "run": "run-h",
        "users": 4,
        "reliable": False,
        "detail": detail,
    }


def _gone(names: str, verb: str = "is") -> dict[str, object]:
    return _health(
        "missing",
        f"{names} {verb} missing from run folder 'run-h' since start-up; "
        "this service still serves what it read then: restart hbm serve",
    )


def _changed(names: str) -> dict[str, object]:
    return _health(
        "changed",
        f"{names} changed in run folder 'run-h' since start-up; "
        "this service still serves what it read then: restart hbm serve",
    )


# --- /health: ok, missing, changed -------------------------------------------------------------


def test_health_of_an_untouched_folder_is_ok_without_detail(tmp_path):
    d = _run(tmp_path)
    (d / io.REPORT_FILE).write_text("<html></html>")  # a file the service does not read
    (d / "figures").mkdir()
    r = serve(d).get("/health")
    assert r.status_code == 200
    assert r.json() == {
        "status": "ok",
        "version": __version__,
        "run": "run-h",
        "users": 4,
        "reliable": False,
    }


def test_health_after_the_folder_is_deleted_is_missing_503(tmp_path):
    """Issue 22 case 14: /health stayed "ok" after the run folder was deleted."""
    d = _run(tmp_path)
    client = serve(d)
    shutil.rmtree(d)
    r = client.get("/health")
    assert r.status_code == 503
    assert r.json() == _gone(ALL_WATCHED, "are")
    assert client.get("/users", params={"limit": 1}).status_code == 200  # still from memory


def test_health_names_the_one_missing_file(tmp_path):
    d = _run(tmp_path)
    client = serve(d)
    (d / io.RUN_FILE).unlink()
    assert client.get("/health").json() == _gone("run.json")


def test_health_of_a_touched_file_is_changed_503(tmp_path):
    d = _run(tmp_path)
    client = serve(d)
    st = os.stat(d / io.FIT_FILE)
    os.utime(d / io.FIT_FILE, ns=(st.st_atime_ns, st.st_mtime_ns + 1_000_000_000))
    r = client.get("/health")
    assert r.status_code == 503 and r.json() == _changed("fit.nc")


def test_health_of_a_file_replaced_by_identical_bytes_is_changed(tmp_path):
    """Same bytes, same size, same mtime, another inode: a rename over the file is seen."""
    d = _run(tmp_path)
    client = serve(d)
    target = d / io.RUN_FILE
    before = os.stat(target)
    copy = d / "run.json.new"
    shutil.copy2(target, copy)
    os.replace(copy, target)
    after = os.stat(target)
    assert (after.st_size, after.st_mtime_ns) == (before.st_size, before.st_mtime_ns)
    assert after.st_ino != before.st_ino
    assert client.get("/health").json() == _changed("run.json")


def test_health_of_a_folder_swapped_for_a_copy_is_changed(tmp_path):
    """A run folder renamed away and another put in its place (as an atomic overwrite does)."""
    d = _run(tmp_path)
    client = serve(d)
    old = tmp_path / "run-h.old"
    d.rename(old)
    shutil.copytree(old, d)  # copy2: same sizes and mtimes, new inodes
    assert client.get("/health").json() == _changed(ALL_WATCHED)


def test_health_missing_wins_over_changed(tmp_path):
    d = _run(tmp_path)
    client = serve(d)
    st = os.stat(d / io.USERS_FILE)
    os.utime(d / io.USERS_FILE, ns=(st.st_atime_ns, st.st_mtime_ns + 5))
    (d / io.POPULATION_FILE).unlink()
    assert client.get("/health").json() == _gone("population.csv")


def test_health_restored_identity_is_ok_again(tmp_path):
    d = _run(tmp_path)
    client = serve(d)
    st = os.stat(d / io.DIAGNOSTICS_FILE)
    os.utime(d / io.DIAGNOSTICS_FILE, ns=(st.st_atime_ns, st.st_mtime_ns + 7))
    assert client.get("/health").json()["status"] == "changed"
    os.utime(d / io.DIAGNOSTICS_FILE, ns=(st.st_atime_ns, st.st_mtime_ns))
    assert client.get("/health").status_code == 200


def test_identify_and_folder_state_by_hand(tmp_path):
    d = tmp_path / "f"
    d.mkdir()
    assert identify(d) == {} and identify(tmp_path / "absent") == {}
    (d / "run.json").write_bytes(b"{}")
    st = os.stat(d / "run.json")
    files = identify(d)
    assert files == {"run.json": (st.st_dev, st.st_ino, 2, st.st_mtime_ns)}
    assert folder_state(d, files) == ("ok", [])
    (d / "fit.nc").write_bytes(b"x")  # not watched at start-up: appearing later changes nothing
    assert folder_state(d, files) == ("ok", [])
    (d / "run.json").write_bytes(b"{ }")
    assert folder_state(d, files) == ("changed", ["run.json"])
    assert folder_state(tmp_path / "absent", files) == ("missing", ["run.json"])
    assert WATCHED[:2] == ("fit.nc", "run.json")


def test_health_documents_its_503(tmp_path):
    spec = serve(_run(tmp_path)).get("/openapi.json").json()
    responses = spec["paths"]["/health"]["get"]["responses"]
    assert set(responses) == {"200", "503"}
    assert set(spec["paths"]["/health"]) == {"get"}  # HEAD is answered, not documented
