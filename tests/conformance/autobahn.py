#!/usr/bin/env python3
"""Run the Autobahn|Testsuite fuzzing client against corral's WebSocket server.

Not part of ``make test`` (the whole suite takes about 15 minutes on two
cores); run it after changing corral/proto/ws.py or corral/io/ws.py:

    .venv/bin/python tests/conformance/autobahn.py                 # all 517 cases
    .venv/bin/python tests/conformance/autobahn.py --cases '1.*,2.*,5.*'

``wstest`` (PyPI ``autobahntestsuite``) runs on Python 2.7 only. The script
takes ``--python2`` (default: pyenv's 2.7 if present, else ``python2`` on
PATH) and installs the suite with that interpreter's pip into
``--workdir``/py27 on first use. corral serves ``tests/apps/ws.py`` (``/echo``)
on a free 127.0.0.1 port; the report (HTML per case, ``index.json``) lands in
``--workdir``/reports. Exit status 1 if any case FAILED.

Result recorded when this script was written: 517 cases, 512 OK, 3
INFORMATIONAL (7.1.6, 7.13.1, 7.13.2), 2 NON-STRICT (6.4.3, 6.4.4: invalid
UTF-8 is detected once the whole frame has arrived, not byte by byte
within it), 0 FAILED.
"""

from __future__ import annotations

import argparse
import glob
import json
import os
import socket
import subprocess
import sys
import time
from collections import Counter

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def default_python2() -> str:
    found = sorted(glob.glob(os.path.expanduser("~/.pyenv/versions/2.7*/bin/python")))
    return found[-1] if found else "python2"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def install(python2: str, userbase: str) -> str:
    wstest = os.path.join(userbase, "bin", "wstest")
    if not os.path.exists(wstest):
        env = dict(os.environ, PYTHONUSERBASE=userbase)
        subprocess.run([python2, "-m", "pip", "install", "--user", "autobahntestsuite"], check=True, env=env)
    return wstest


def case_key(case: str) -> list[int]:
    return [int(part) for part in case.split(".")]


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--python2", default=default_python2())
    parser.add_argument("--workdir", default="/tmp/corral-autobahn")
    parser.add_argument("--cases", default="*", help="comma-separated case patterns (default: all)")
    args = parser.parse_args(argv)
    userbase = os.path.join(args.workdir, "py27")
    wstest = install(args.python2, userbase)
    port = free_port()
    reports = os.path.join(args.workdir, "reports")
    spec = {
        "outdir": reports,
        "servers": [{"agent": "corral", "url": f"ws://127.0.0.1:{port}/echo"}],
        "cases": [case.strip() for case in args.cases.split(",")],
        "exclude-cases": [],
        "exclude-agent-cases": {},
    }
    os.makedirs(args.workdir, exist_ok=True)
    spec_path = os.path.join(args.workdir, "fuzzingclient.json")
    with open(spec_path, "w") as handle:
        json.dump(spec, handle)
    log = open(os.path.join(args.workdir, "corral.log"), "w")
    server = subprocess.Popen(
        [sys.executable, "-m", "corral", "ws:app", "--app-dir", os.path.join(ROOT, "tests", "apps"), "--host", "127.0.0.1",
         "--port", str(port), "--no-access-log", "--ws-max-size", "20000000"],
        cwd=ROOT, stdout=log, stderr=subprocess.STDOUT,
    )
    try:
        deadline = time.monotonic() + 20
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), 1).close()
                break
            except OSError:
                if time.monotonic() > deadline or server.poll() is not None:
                    raise SystemExit(f"corral did not start; see {log.name}") from None
                time.sleep(0.1)
        env = dict(os.environ, PYTHONUSERBASE=userbase)
        subprocess.run([wstest, "-m", "fuzzingclient", "-s", spec_path], check=True, env=env, cwd=args.workdir,
                       stdout=subprocess.DEVNULL)
    finally:
        server.terminate()
        server.wait(30)
        log.close()
    with open(os.path.join(reports, "index.json")) as handle:
        results = json.load(handle)["corral"]
    behaviors = Counter(result["behavior"] for result in results.values())
    print(f"{len(results)} cases: " + ", ".join(f"{count} {name}" for name, count in behaviors.most_common()))
    failed = 0
    for case in sorted(results, key=case_key):
        result = results[case]
        if result["behavior"] not in ("OK", "INFORMATIONAL") or result["behaviorClose"] not in ("OK", "INFORMATIONAL"):
            print(f"  {case}: {result['behavior']} (close: {result['behaviorClose']}, code {result['remoteCloseCode']})")
            failed += result["behavior"] == "FAILED" or result["behaviorClose"] == "FAILED"
    print(f"report: {reports}/index.html")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
