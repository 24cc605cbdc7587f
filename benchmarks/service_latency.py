"""1,000 requests on loopback against ``hbm serve`` of a run folder: errors, p50 and p99 latency.

    python -m benchmarks.service_latency reports/demo [--requests 1000] [--out FILE.json]

Starts the real server (uvicorn) in a subprocess, waits for ``/health``, then sends the requests
one at a time over one keep-alive connection, cycling through every route: health, a users page,
each user's profile at both paths, a cold-start profile, the population. Any status other than
200 counts as an error.
"""

from __future__ import annotations

import argparse
import http.client
import json
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _wait(port: int, proc: subprocess.Popen[bytes], timeout: float = 120.0) -> None:
    t0 = time.monotonic()
    while time.monotonic() - t0 < timeout:
        if proc.poll() is not None:
            raise SystemExit(f"server exited with {proc.returncode} before it answered")
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=2)
        try:
            conn.request("GET", "/health")
            if conn.getresponse().status == 200:
                return
        except OSError:
            time.sleep(0.2)
        finally:
            conn.close()
    raise SystemExit(f"server did not answer /health within {timeout:.0f} s")


def run(run_dir: str, n_requests: int) -> dict[str, object]:
    port = _free_port()
    cmd = [sys.executable, "-m", "hbm.app.cli", "serve", run_dir, "--port", str(port)]
    proc = subprocess.Popen([*cmd, "--log-level", "warning"])
    try:
        t_start = time.monotonic()
        _wait(port, proc)
        startup_s = time.monotonic() - t_start
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
        try:
            return _measure(conn, n_requests, run_dir, startup_s)
        finally:
            conn.close()
    finally:
        proc.terminate()
        proc.wait(timeout=30)


def _measure(
    conn: http.client.HTTPConnection, n_requests: int, run_dir: str, startup_s: float
) -> dict[str, object]:
    conn.request("GET", "/users?limit=500")
    users = [u["user_id"] for u in json.loads(conn.getresponse().read())["users"]]
    paths = ["/health", "/users?offset=0&limit=50", "/population"]
    paths += [f"/users/{u}/trigger_profile" for u in users]
    paths += [f"/user/{u}/trigger_profile" for u in users]
    paths += ["/users/newcomer/trigger_profile?cold_start=true"]
    latencies, errors = [], 0
    for i in range(n_requests):
        path = paths[i % len(paths)]
        t0 = time.perf_counter()
        conn.request("GET", path)
        resp = conn.getresponse()
        resp.read()
        latencies.append(time.perf_counter() - t0)
        errors += resp.status != 200
    ms = np.array(latencies) * 1000
    return {
        "run": run_dir,
        "requests": n_requests,
        "errors": errors,
        "p50_ms": float(np.percentile(ms, 50)),
        "p99_ms": float(np.percentile(ms, 99)),
        "max_ms": float(ms.max()),
        "total_s": float(ms.sum() / 1000),
        "startup_s": startup_s,
        "routes": len(paths),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("run_dir")
    parser.add_argument("--requests", type=int, default=1000)
    parser.add_argument("--out", type=Path, default=None, help="also write the result as JSON")
    args = parser.parse_args()
    result = run(args.run_dir, args.requests)
    text = json.dumps(result, indent=2)
    print(text)
    if args.out:
        from hbm.results.io import write_text

        write_text(args.out, text + "\n")
    return 0 if result["errors"] == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
