#!/usr/bin/env python3
"""The API tests of issue 17 against the real agentd binary.

  run_schemathesis.py validate AGENTD_SOURCE_DIR VENV
      docs/openapi.json is a valid OpenAPI 3.1 document (openapi-spec-validator).
  run_schemathesis.py fuzz AGENTD_BINARY AGENTD_SOURCE_DIR VENV OUT_DIR [--long]
      starts agentd (free port, temp data folder, a fast script team, short
      approval/clarification timeouts so that every plan ends) and runs
      schemathesis with tests/api/schemathesis.toml: every phase (coverage,
      fuzzing, stateful), every operation, a fixed seed. --long (bench/run
      --api-fuzz): many more examples, then the same checks.
VENV is the venv scripts/setup installs (${AGENTD_CACHE_DIR:-~/.cache/agentd}/api-venv).
Exit 0 when everything passed; the report is kept in OUT_DIR.
"""
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request

SEED = 17
EXAMPLES = 20  # per operation and phase: ~30 s on the CI machine
LONG_EXAMPLES = 500


def need(venv, tool):
    path = os.path.join(venv, "bin", tool)
    if not os.path.exists(path):
        print(f"{path} is missing: run scripts/setup (it installs the API test tools into {venv})")
        sys.exit(1)
    return path


def validate(src, venv):
    doc = os.path.join(src, "docs", "openapi.json")
    r = subprocess.run([need(venv, "openapi-spec-validator"), doc])
    print("1 passed, 0 failed" if r.returncode == 0 else "0 passed, 1 failed")
    return r.returncode


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


TEAM = {
    "team_id": "fast", "name": "Fast team", "description": "two quick script agents",
    "agents": [
        {"name": "Researcher", "type": "script", "description": "finds facts", "script": {"messages": 2, "delay_ms": 20}},
        {"name": "Writer", "type": "script", "description": "writes it up", "script": {"messages": 2, "delay_ms": 20}},
    ],
}


def fuzz(binary, src, venv, out, long_run):
    st = need(venv, "schemathesis")
    os.makedirs(out, exist_ok=True)
    work = tempfile.mkdtemp(prefix="agentd-schemathesis-")
    os.makedirs(os.path.join(work, "teams"))
    with open(os.path.join(work, "teams", "fast.json"), "w") as f:
        json.dump(TEAM, f)
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    log = open(os.path.join(out, "agentd.log"), "w")
    agentd = subprocess.Popen(
        [binary, "--listen", f"127.0.0.1:{port}", "--data-dir", os.path.join(work, "data"),
         "--teams-dir", os.path.join(work, "teams"), "--default-team", "fast",
         # Plans that wait for an answer end within a second: an SSE stream
         # of one (GET /plan/{id}/events) closes after its terminal message.
         "--approval-timeout-s", "1", "--clarification-timeout-s", "1", "--log-level", "warn"],
        stdout=log, stderr=subprocess.STDOUT)
    try:
        until = time.time() + 20
        while True:
            try:
                urllib.request.urlopen(base + "/healthz", timeout=1).read()
                break
            except OSError:
                if time.time() > until or agentd.poll() is not None:
                    print("agentd did not become healthy; see", log.name)
                    return 1
                time.sleep(0.05)
        n = LONG_EXAMPLES if long_run else EXAMPLES
        cmd = [st, "--config-file", os.path.join(src, "tests", "api", "schemathesis.toml"), "run",
               os.path.join(src, "docs", "openapi.json"), "--url", base, "--seed", str(SEED),
               "--max-examples", str(n), "--phases", "coverage,fuzzing,stateful",
               "--report", "junit", "--report-dir", out, "--no-color"]
        print("+", " ".join(cmd), flush=True)
        r = subprocess.run(cmd, cwd=out, timeout=1800 if long_run else 300)
        if agentd.poll() is not None:
            print("agentd exited during the run; see", log.name)
            return 1
        return r.returncode
    finally:
        if agentd.poll() is None:
            agentd.send_signal(signal.SIGTERM)
            try:
                code = agentd.wait(15)
                if code != 0:
                    print(f"agentd exited {code} on SIGTERM")
            except subprocess.TimeoutExpired:
                agentd.kill()
        log.close()
        subprocess.run(["rm", "-rf", work])


def main():
    if len(sys.argv) >= 4 and sys.argv[1] == "validate":
        return validate(sys.argv[2], sys.argv[3])
    if len(sys.argv) >= 6 and sys.argv[1] == "fuzz":
        return fuzz(sys.argv[2], sys.argv[3], sys.argv[4], sys.argv[5], "--long" in sys.argv[6:])
    print(__doc__)
    return 2


if __name__ == "__main__":
    sys.exit(main())
