#!/usr/bin/env python3
"""Overload figures for corral (loopback only, bounded in count and time).

    python3 bench/overload.py slowloris   # normal requests served during a 300-connection slowloris
    python3 bench/overload.py emfile      # worker CPU while its descriptors are exhausted
    python3 bench/overload.py slowreaders # worker RSS with 1000 slow readers pulling 10 MB each
    python3 bench/overload.py recovery    # burst of 5x --limit-connections: all answered? time to normal
    python3 bench/overload.py all
    python3 bench/overload.py goodput     # issue 21: open-loop arrivals at 0.8x..8x capacity, peers in the same run
                                          # (bench/goodput.py; --help for its options; not part of `all`)
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CORRAL = os.path.join(REPO, ".venv", "bin", "corral")
APP = "bench.overload_app:app"


class Corral:
    def __init__(self, *args: str, prefix: tuple[str, ...] = ()):
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            self.port = probe.getsockname()[1]
        self.log = open(os.devnull, "wb")
        self.proc = subprocess.Popen(
            [*prefix, CORRAL, APP, "--app-dir", REPO, "--port", str(self.port), "--no-access-log", *args],
            stdout=self.log, stderr=self.log, start_new_session=True)
        deadline = time.monotonic() + 20
        while True:
            try:
                if get(self.port, timeout=1)[0] == 200:
                    break
            except OSError:
                pass
            if time.monotonic() > deadline:
                raise SystemExit("corral did not start")
            time.sleep(0.05)
        out = subprocess.run(["pgrep", "-P", str(self.proc.pid)], capture_output=True, text=True).stdout
        self.worker = int(out.split()[0])

    def stop(self):
        self.proc.terminate()
        try:
            self.proc.wait(40)
        except subprocess.TimeoutExpired:
            os.killpg(self.proc.pid, 9)
            self.proc.wait()

    def cpu(self) -> float:
        with open(f"/proc/{self.worker}/stat") as handle:
            fields = handle.read().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

    def rss_mb(self) -> float:
        with open(f"/proc/{self.worker}/status") as handle:
            for line in handle:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) / 1024
        return 0.0


def get(port: int, path: bytes = b"/", timeout: float = 5.0) -> tuple[int, float]:
    started = time.monotonic()
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as sock:
        sock.sendall(b"GET " + path + b" HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        data = read_all(sock, timeout)
    return int(data.split(b" ", 2)[1]), time.monotonic() - started


def read_all(sock: socket.socket, timeout: float) -> bytes:
    """Read until the server closes; what arrived if it times out."""
    sock.settimeout(timeout)
    data = b""
    try:
        while True:
            chunk = sock.recv(65536)
            if not chunk:
                break
            data += chunk
    except socket.timeout:
        pass
    return data


def slowloris(connections: int = 300, seconds: float = 12.0) -> None:
    server = Corral("--timeout-header", "10")
    slow = []
    try:
        for _ in range(connections):
            sock = socket.create_connection(("127.0.0.1", server.port))
            sock.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n")
            slow.append(sock)
        ok = failed = 0
        worst = 0.0
        deadline = time.monotonic() + seconds
        next_trickle = 0.0
        while time.monotonic() < deadline:
            if time.monotonic() >= next_trickle:
                for sock in slow:
                    try:
                        sock.send(b"X")
                    except OSError:
                        pass
                next_trickle = time.monotonic() + 1.0
            try:
                status, took = get(server.port)
                ok += status == 200
                failed += status != 200
                worst = max(worst, took)
            except OSError:
                failed += 1
        closed = sum(1 for sock in slow if _closed(sock))
        print(f"slowloris: {connections} connections trickling headers for {seconds:.0f} s "
              f"(--timeout-header 10): normal requests served {ok}, failed {failed}, "
              f"slowest {worst * 1000:.1f} ms; slow connections closed by the server: {closed}/{connections}")
    finally:
        for sock in slow:
            sock.close()
        server.stop()


def _closed(sock: socket.socket) -> bool:
    sock.settimeout(0.5)
    try:
        data = sock.recv(65536)
        while data:
            data = sock.recv(65536)
        return True
    except OSError:
        return False


def emfile(nofile: int = 256, connections: int = 400) -> None:
    server = Corral(prefix=("prlimit", f"--nofile={nofile}:{nofile}", "--"))
    held = []
    try:
        for _ in range(connections):
            held.append(socket.create_connection(("127.0.0.1", server.port)))
        time.sleep(0.5)
        before, started = server.cpu(), time.monotonic()
        time.sleep(3.0)
        used = (server.cpu() - before) / (time.monotonic() - started)
        for sock in held:
            sock.close()
        held = []
        t0 = time.monotonic()
        while True:
            try:
                if get(server.port, timeout=1)[0] == 200:
                    break
            except OSError:
                pass
        print(f"emfile: RLIMIT_NOFILE {nofile}, {connections} connections held: worker CPU "
              f"{used * 100:.1f}% of a core while exhausted; served again {1000 * (time.monotonic() - t0):.0f} ms after they closed")
    finally:
        for sock in held:
            sock.close()
        server.stop()


def slowreaders(readers: int = 1000) -> None:
    server = Corral("--timeout-write", "60")
    socks = []
    try:
        base = server.rss_mb()
        for _ in range(readers):
            sock = socket.socket()
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
            sock.connect(("127.0.0.1", server.port))
            sock.sendall(b"GET /big HTTP/1.1\r\nHost: x\r\n\r\n")
            socks.append(sock)
        time.sleep(5.0)
        peak = server.rss_mb()
        status, took = get(server.port)
        print(f"slow readers: {readers} connections each pulling 10 MB and reading nothing: worker RSS "
              f"{base:.0f} MB -> {peak:.0f} MB ({(peak - base) * 1024 / readers:.0f} KiB per reader; "
              f"{readers * 10} MB requested); a normal request meanwhile: {status} in {took * 1000:.1f} ms")
    finally:
        for sock in socks:
            sock.close()
        server.stop()


def recovery(limit: int = 50) -> None:
    server = Corral("--limit-connections", str(limit))
    burst = []
    try:
        started = time.monotonic()
        for _ in range(limit * 5):
            sock = socket.create_connection(("127.0.0.1", server.port))
            sock.sendall(b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
            burst.append(sock)
        answered = 0
        for sock in burst:
            answered += read_all(sock, 10).startswith(b"HTTP/1.1 200")
            sock.close()
        burst_end = time.monotonic()
        status, took = get(server.port)
        print(f"recovery: burst of {limit * 5} connections (5x --limit-connections {limit}): {answered} answered 200 "
              f"in {1000 * (burst_end - started):.0f} ms, none dropped = {answered == limit * 5}; next request {status} "
              f"{took * 1000:.1f} ms after the burst")
    finally:
        for sock in burst:
            sock.close()
        server.stop()


def main() -> int:
    if sys.argv[1:2] == ["goodput"]:
        from goodput import main as goodput

        return goodput(sys.argv[2:])
    drills = {"slowloris": slowloris, "emfile": emfile, "slowreaders": slowreaders, "recovery": recovery}
    names = sys.argv[1:] or ["all"]
    for name in (drills if names == ["all"] else names):
        drills[name]()
    return 0


if __name__ == "__main__":
    sys.exit(main())
