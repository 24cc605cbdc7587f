"""The service under issue 22 (case 14): /health notices a changed or deleted run folder, HEAD is
answered, a 422 does not repeat long input, /docs needs no network, a port in use exits 5.

Run folders are written by hand (``write_run`` of test_service_rules); no fit runs. Real servers
listen on 127.0.0.1 only, in a subprocess that each test stops.
"""

from __future__ import annotations

import contextlib
import http.client
import os
import re
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from hbm import __version__
from hbm.app import service_http
from hbm.app.cli import load_service_data, main
from hbm.app.service import USER_ID_PATTERN, WATCHED, create_app, folder_state, identify
from hbm.app.service_http import MAX_ECHO, bind, short_echo
from hbm.errors import EXIT_PORT, PortInUseError
from hbm.results import io

from .test_service_rules import write_run

EXTERNAL = re.compile(r"https?://", re.IGNORECASE)
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


def test_health_names_two_missing_files_in_the_plural(tmp_path):
    d = _run(tmp_path)
    client = serve(d)
    (d / io.RUN_FILE).unlink()
    (d / io.FIT_FILE).unlink()
    assert client.get("/health").json() == _gone("fit.nc, run.json", "are")


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


# --- HEAD --------------------------------------------------------------------------------------


def _get_paths(client: TestClient) -> list[str]:
    paths = [r.path for r in client.app.routes if "GET" in getattr(r, "methods", ())]
    # next_day_risk needs its query; this run has no clustering term, so its answer is a 404
    return [
        p.replace("{user_id}", "U-2").replace("next_day_risk", "next_day_risk?attack_today=1")
        for p in paths
    ]


def test_head_is_answered_on_every_get_route(tmp_path):
    """Issue 22 case 14: HEAD gave 405. Now the GET's status and headers, without a body."""
    client = serve(_run(tmp_path))
    paths = _get_paths(client)
    assert len(paths) == 12  # 6 API routes, openapi.json, /docs, /redoc and 3 docs assets
    for path in paths:
        get = client.get(path, follow_redirects=False)
        head = client.head(path, follow_redirects=False)
        status = 307 if path == "/redoc" else 404 if "next_day_risk" in path else 200
        assert (path, head.status_code) == (path, status)
        assert head.content == b""
        assert head.headers["content-length"] == str(len(get.content))
        assert head.headers.get("content-type") == get.headers.get("content-type")


def test_head_keeps_the_status_of_errors(tmp_path):
    d = _run(tmp_path)
    client = serve(d)
    assert client.head("/users/nobody/trigger_profile").status_code == 404
    assert client.head("/users/has space/trigger_profile").status_code == 422
    assert client.head("/users", params={"limit": 0}).status_code == 422
    assert client.head("/no/such/route").status_code == 404
    assert client.post("/health").status_code == 405  # other methods are still refused
    shutil.rmtree(d)
    r = client.head("/health")
    assert r.status_code == 503 and r.content == b""


# --- 422s do not repeat long input -------------------------------------------------------------


def test_a_long_id_is_not_repeated_in_the_422(tmp_path):
    """Issue 22 case 14: a 100 KB id came back whole. (httpx caps a URL at 64 KiB, so 60,000
    characters here; the real-server test below sends 100,000.)"""
    r = serve(_run(tmp_path)).get("/users/" + "x" * 60_000 + "/trigger_profile")
    assert r.status_code == 422
    assert r.json() == {
        "detail": [
            {
                "type": "string_pattern_mismatch",
                "loc": ["path", "user_id"],
                "msg": f"String should match pattern '{USER_ID_PATTERN}'",
                "input": "x" * 128 + "... (60000 characters)",
                "ctx": {"pattern": USER_ID_PATTERN},
            }
        ]
    }
    assert len(r.content) < 1_000


def test_a_long_query_value_is_cut_and_a_short_id_kept(tmp_path):
    client = serve(_run(tmp_path))
    (err,) = client.get("/users", params={"limit": "9" * 300}).json()["detail"]
    assert err["loc"] == ["query", "limit"] and err["input"] == "9" * 128 + "... (300 characters)"
    (err,) = client.get("/users/has space/trigger_profile").json()["detail"]
    assert err["input"] == "has space"


def test_short_echo_by_hand():
    assert MAX_ECHO == 128
    assert short_echo("a" * 128) == "a" * 128
    assert short_echo("a" * 129) == "a" * 128 + "... (129 characters)"
    assert short_echo(None) is None and short_echo(7) == 7
    assert short_echo(["b" * 40] * 3) == "(not repeated: 132 characters)"  # 3 x 42 + 2 x 2 + 2


# --- /docs offline -----------------------------------------------------------------------------


def _local_refs(page: str) -> list[str]:
    return re.findall(r'(?:src|href)="([^"]+)"', page)


def test_docs_page_names_no_other_host(tmp_path):
    """Issue 22 case 14: /docs loaded Swagger UI from a CDN and was blank offline."""
    client = serve(_run(tmp_path))
    page = client.get("/docs")
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    assert EXTERNAL.search(page.text) is None
    refs = _local_refs(page.text)
    assert sorted(refs) == [
        "/docs/assets/favicon.png",
        "/docs/assets/swagger-ui-bundle.js",
        "/docs/assets/swagger-ui.css",
    ]
    folder = service_http.offline_assets()
    assert folder is not None
    for ref in refs:
        assert ref.startswith("/docs/assets/")
        r = client.get(ref)
        assert r.status_code == 200
        assert r.content == (folder / ref.rsplit("/", 1)[1]).read_bytes()
    redoc = client.get("/redoc", follow_redirects=False)
    assert redoc.status_code == 307 and redoc.headers["location"] == "/docs"


def test_docs_without_the_assets_package_is_a_plain_routes_page(tmp_path, monkeypatch):
    monkeypatch.setattr(service_http, "offline_assets", lambda: None)
    client = serve(_run(tmp_path))
    page = client.get("/docs").text
    assert EXTERNAL.search(page) is None and "<script" not in page and "stylesheet" not in page
    for path in ("/health", "/users", "/users/{user_id}/trigger_profile", "/population"):
        assert f"<td>{path}</td>" in page
    assert "<td>offset (query)</td>" not in page  # parameters are listed per route, joined
    assert "offset (query), limit (query)" in page and "user_id (path, required)" in page
    assert client.get("/docs/assets/swagger-ui-bundle.js").status_code == 404


# --- a port in use -----------------------------------------------------------------------------


@contextlib.contextmanager
def _listening() -> Iterator[int]:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        yield int(s.getsockname()[1])


def test_port_in_use_is_exit_5_with_one_line(tmp_path, capsys):
    """Issue 22 case 14: a port in use exited 3, the code of `fit --strict`."""
    d = _run(tmp_path)
    with _listening() as port:
        assert main(["serve", str(d), "--port", str(port)]) == EXIT_PORT == 5
    err = capsys.readouterr().err
    assert err == (
        f"error: cannot listen on 127.0.0.1:{port}: the port is in use "
        "(choose another with --port)\n"
    )


def test_the_hbm_process_exits_5_on_a_port_in_use(tmp_path):
    d = _run(tmp_path)
    with _listening() as port:
        cmd = [sys.executable, "-m", "hbm.app.cli", "serve", str(d), "--port", str(port)]
        out = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    assert out.returncode == 5
    assert out.stderr.count("\n") == 1 and "the port is in use" in out.stderr


@pytest.mark.parametrize(
    ("host", "port", "reason"),
    [("127.0.0.1", 70000, "the port must be 0-65535"), ("no-such-host.invalid", 8000, "")],
)
def test_bind_refuses_an_address_it_cannot_listen_on(host, port, reason):
    with pytest.raises(PortInUseError, match=rf"^cannot listen on {host}:{port}: {reason}") as e:
        bind(host, port)
    assert "\n" not in str(e.value)


@pytest.mark.parametrize("port", ["70000", "-1", "http", "\u0662"])
def test_serve_refuses_a_port_number_out_of_range_as_bad_input(tmp_path, capsys, port):
    with pytest.raises(SystemExit) as e:
        main(["serve", str(tmp_path), "--port", port])
    assert e.value.code == 2
    assert f"argument --port: {port!r} is not a port number (0-65535)" in capsys.readouterr().err


def test_bind_returns_a_bound_socket():
    with bind("127.0.0.1", 0) as sock:
        assert sock.getsockname()[0] == "127.0.0.1" and sock.getsockname()[1] > 0


# --- a real server on loopback -----------------------------------------------------------------


@contextlib.contextmanager
def live_server(run_dir: Path) -> Iterator[int]:
    """``hbm serve run_dir`` in a subprocess on a free loopback port, until /health answers."""
    with bind("127.0.0.1", 0) as probe:
        port = int(probe.getsockname()[1])
    cmd = [sys.executable, "-m", "hbm.app.cli", "serve", str(run_dir), "--port", str(port)]
    proc = subprocess.Popen([*cmd, "--log-level", "warning"], stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 120
        while _status(port, "GET", "/health") is None:
            assert proc.poll() is None, f"server exited with {proc.returncode}"
            assert time.monotonic() < deadline, "server did not answer /health in 120 s"
            time.sleep(0.2)
        yield port
    finally:
        proc.terminate()
        proc.wait(timeout=30)


def _status(port: int, method: str, path: str) -> tuple[int, dict[str, str], bytes] | None:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        conn.request(method, path)
        r = conn.getresponse()
        return r.status, {k.lower(): v for k, v in r.getheaders()}, r.read()
    except OSError:
        return None
    finally:
        conn.close()


def test_real_server_head_health_and_long_id(tmp_path):
    d = _run(tmp_path)
    with live_server(d) as port:
        head = _status(port, "HEAD", "/users/U-2/trigger_profile")
        get = _status(port, "GET", "/users/U-2/trigger_profile")
        assert head is not None and get is not None
        assert head[0] == get[0] == 200 and head[2] == b""
        assert head[1]["content-length"] == str(len(get[2]))
        # 10,000 characters: longer than any id, shorter than the server's request-line limit
        # (16 KiB), so the answer always arrives; at 100,000 the server refused the line and
        # reset the connection while the client was still sending, and the test flaked
        long_id = _status(port, "GET", "/users/" + "x" * 10_000 + "/trigger_profile")
        assert long_id is not None and long_id[0] in (400, 414, 422)  # the server may refuse it
        assert len(long_id[2]) < 1_000 and b"x" * 129 not in long_id[2]
        shutil.rmtree(d)
        gone = _status(port, "GET", "/health")
        assert gone is not None and gone[0] == 503 and b'"status":"missing"' in gone[2]


@pytest.mark.ci_stat
def test_docs_render_in_chromium_with_the_network_cut(tmp_path):
    """Swagger UI at /docs in Debian's chromium, every request to any host but the server
    aborted: the five operations render, no request leaves, the console stays clean."""
    from playwright.sync_api import sync_playwright

    chromium = os.environ.get("HBM_CHROMIUM", "/usr/bin/chromium")
    assert Path(chromium).exists(), f"{chromium} not found: `make browser` installs it"
    outside: list[str] = []
    errors: list[str] = []
    with live_server(_run(tmp_path)) as port, sync_playwright() as p:
        browser = p.chromium.launch(executable_path=chromium, args=["--no-sandbox"])
        page = browser.new_page()
        local = f"http://127.0.0.1:{port}/"

        def only_local(route):
            if route.request.url.startswith(local):
                return route.continue_()
            outside.append(route.request.url)
            return route.abort()

        page.route("**/*", only_local)
        page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
        page.on("pageerror", lambda e: errors.append(str(e)))
        page.goto(local + "docs")
        page.wait_for_selector(".opblock", timeout=30_000)
        operations = page.locator(".opblock").count()
        page.screenshot(path=str(tmp_path / "docs.png"))
        browser.close()
    assert operations == 6  # next_day_risk is the sixth
    assert outside == [] and errors == []
