"""The master (watcher): forks workers, watches them, reloads and stops them in order.

It does no request work. It sleeps in ``select`` on one pipe per worker and
the signal wake-up pipe; signal handlers only record the signal, and the loop
dispatches each to ``handle_<name>``. Every pass it reaps children, reads
worker messages (``worker/process.py`` lists them), enforces deadlines and
brings each worker slot back to what it should be.

Slots: worker slot ``i`` (0 <= i < target) should have one serving worker.
A worker marked *retiring* (reload, recycling) keeps serving until a fresh
worker in the same slot reports ready; only then is it sent TERM. So the
sockets always have a ready worker accepting, and a reload loses nothing.
"""

from __future__ import annotations

import errno
import gc
import logging
import mmap
import os
import random
import select
import signal
import sys
import time
from collections import deque

from ..worker.process import EXIT_BOOT, EXIT_CONFIG, PHASE_LAME_DUCK, PHASE_STOPPING, Worker
from .metrics import MasterMetrics, MetricsEndpoint, rss

log = logging.getLogger("corral.error")

MAX_BOOT_FAILURES = 5  # consecutive failures before a first boot gives up
BACKOFF_MAX = 10.0
STACK_DUMP_GRACE = 1.0  # between the stack dump (SIGUSR2) and SIGKILL
KILL_GRACE = 5.0  # beyond --timeout-graceful before SIGKILL
FAST_TIMEOUT = 5.0

SIGNALS = {
    signal.SIGTERM: "term",
    signal.SIGINT: "int",
    signal.SIGQUIT: "quit",
    signal.SIGHUP: "hup",
    signal.SIGTTIN: "ttin",
    signal.SIGTTOU: "ttou",
    signal.SIGUSR1: "usr1",
    signal.SIGUSR2: "usr2",
    signal.SIGCHLD: "chld",
}


class WorkerProc:
    """The master's view of one worker process."""

    def __init__(self, pid: int, slot: int, fd: int, generation: int) -> None:
        self.pid = pid
        self.slot = slot
        self.fd = fd
        self.generation = generation
        self.state = "booting"  # -> ready -> draining
        self.retiring = False
        self.recycle = ""  # why it is to be recycled (a log phrase), "" if not
        self.recycle_cause = "recycle"  # its exit cause in the metrics: recycle, max_rss, lifetime
        self.started = time.monotonic()
        self.retire_at: float | None = None  # --workers-lifetime (+ jitter)
        self.rss = 0  # bytes, at the last sample (--workers-max-rss)
        self.last_heartbeat = self.started
        self.kill_at: float | None = None
        self.buffer = b""
        self.error = ""
        self.in_flight = 0
        self.connections = 0
        self.requests = 0
        self.metrics: dict | None = None  # its last totals (--metrics-bind)
        self.exit_cause = ""  # why the master stopped it (supervisor/metrics.py EXIT_CAUSES)
        self.traceback: list[str] = []  # the app's, from a failed boot ("tb" lines)
        self.abandoned = False  # booting when its reload failed: killed, its exit is no new failure

    def doing(self) -> str:
        if self.state == "booting":
            return "while booting"
        return (
            f"while {self.state} with {self.in_flight} requests in flight on "
            f"{self.connections} connections, {self.requests} served"
        )


class Master:
    def __init__(self, config, sockets) -> None:
        self.config = config
        self.sockets = sockets
        self.target = config.workers
        self.workers: dict[int, WorkerProc] = {}
        self.pending_signals: deque[int] = deque()
        self.generation = 0
        self.stopping: str | None = None
        self.exit_code = 0
        self.fatal = ""  # why the app cannot boot; the master's last line
        self.boot_failures = 0
        self.ever_ready = False
        self.reloading = False
        self.next_spawn_at = 0.0
        self.failed_generation = -1  # a reload whose new workers did not boot
        self.failed_at = 0.0  # when it failed
        self._wakeup_r = self._wakeup_w = -1
        # Other descriptors the master sleeps on: fd -> callback (reload
        # watcher, metrics endpoint).
        self.readers: dict = {}
        self.writers: dict = {}
        self.watcher_pid = 0
        self._watcher_buffer = b""
        self.phase = mmap.mmap(-1, 1)  # shared with every worker (worker/process.py PHASE_*)
        self.released = False  # the sockets refuse new connections (stopping)
        self.lame_duck_until: float | None = None  # --shutdown-delay running
        # USR2 (supervisor/upgrade.py): in the old master, the new master's pid
        # while it boots; in the new master, the pipe to report "ready" on.
        self.upgrade_pid = 0
        self.upgrade_notify = -1
        self.metrics = MasterMetrics()
        self.metrics_socket = None  # bound by serve() with --metrics-bind
        self.metrics_endpoint: MetricsEndpoint | None = None
        self.pidfile = None  # --pid (pidfile.PidFile), written by serve() or, after a USR2, by _upgrade_ready
        self.announced_ready = False  # the when_ready hook ran
        self.env_file = None  # --env-file (envfile.EnvFile), re-read on each reload
        self.app = None  # --preload: the app, imported here before any fork

    def preload(self) -> str | None:
        """--preload: import the app here, once, so every worker forked from
        this master shares its memory copy-on-write. ``gc.freeze()`` moves
        what the import made into the permanent generation, so the workers'
        collections never write to (and so copy) those pages. Returns the
        one-line reason it cannot, or None."""
        from ..loader import AppLoadError, import_app

        config = self.config
        try:
            self.app = import_app(config.app, factory=config.factory, app_dir=config.app_dir)
        except AppLoadError as exc:
            return f"--preload: {exc}"
        except (Exception, SystemExit) as exc:  # the app's own module raised while importing
            log.debug("--preload: %s raised while importing", config.app, exc_info=True)
            return f"--preload: {config.app} raised {type(exc).__name__} while importing: {exc}"
        gc.freeze()
        log.info("master %d: --preload: %s imported; %d objects frozen, shared copy-on-write by the workers",
                 os.getpid(), config.app, gc.get_freeze_count())
        return None

    @property
    def pid(self) -> int:
        """For hooks: ``server.pid``, ``server.config``, ``server.target`` (the worker count)."""
        return os.getpid()

    # -- main loop -----------------------------------------------------------

    def run(self) -> int:
        self._install_signals()
        if self.metrics_socket is not None:
            self.metrics_endpoint = MetricsEndpoint(
                self.metrics_socket, lambda: self.metrics.render(self), self.readers, self.writers
            )
            log.info("master: Prometheus metrics at %s", self.metrics_endpoint.address)
        if self.config.reload:
            # No .pyc written while developing: an edit within the same second
            # that keeps the file's size would otherwise load stale bytecode.
            sys.dont_write_bytecode = True
            self._start_watcher()
        log.info(
            "corral master %d serving %s with %d worker%s (accept: %s)",
            os.getpid(),
            self.sockets.describe(),
            self.target,
            "" if self.target == 1 else "s",
            "reuseport" if self.sockets.reuseport else "shared",
        )
        while True:
            if not self.stopping:
                self._maintain()
            if self.stopping and not self.workers:
                break
            self._sleep()
            self._dispatch_signals()
            self._reap()
            self._enforce_deadlines()
            if self.lame_duck_until is not None and not self.stopping and time.monotonic() >= self.lame_duck_until:
                log.info("master: shutdown delay over")
                self._stop("graceful")
        self._stop_watcher()
        if self.metrics_endpoint is not None:
            self.metrics_endpoint.close()
        self.sockets.close()
        # After a USR2 the sockets live on in the new master: handed over, not closed.
        sockets = f"handed over to new master {self.upgrade_pid}" if self.stopping == "upgraded" else "closed"
        log.info("master %d: all workers gone, sockets %s; exit %d", os.getpid(), sockets, self.exit_code)
        self.config.run_hook("on_exit", self)
        if self.fatal:
            print(f"corral: error: {self.fatal}", file=sys.stderr, flush=True)
        return self.exit_code

    def _install_signals(self) -> None:
        self._wakeup_r, self._wakeup_w = os.pipe()
        for fd in (self._wakeup_r, self._wakeup_w):
            os.set_blocking(fd, False)
        signal.set_wakeup_fd(self._wakeup_w, warn_on_full_buffer=False)
        for signum in SIGNALS:
            signal.signal(signum, self._record_signal)

    def _record_signal(self, signum, frame) -> None:
        self.pending_signals.append(signum)

    def _sleep(self) -> None:
        now = time.monotonic()
        deadlines = [d for d in map(self._deadline, self.workers.values()) if d is not None]
        if self.next_spawn_at > now:
            deadlines.append(self.next_spawn_at)
        if self.lame_duck_until is not None and not self.stopping:
            deadlines.append(self.lame_duck_until)
        timeout = max(0.0, min(deadlines) - now) if deadlines else 5.0
        fds = [self._wakeup_r] + [w.fd for w in self.workers.values() if w.fd >= 0] + list(self.readers)
        try:
            readable, writable, _ = select.select(fds, list(self.writers), [], min(timeout, 5.0))
        except InterruptedError:
            return
        for fd in writable:
            callback = self.writers.get(fd)
            if callback is not None:
                callback()
        for fd in readable:
            if fd in self.readers:
                callback = self.readers.get(fd)
                if callback is not None:
                    callback()
            elif fd == self._wakeup_r:
                try:
                    while os.read(fd, 512):
                        pass
                except BlockingIOError:
                    pass
            else:
                self._read_worker(fd)

    def _dispatch_signals(self) -> None:
        while self.pending_signals:
            signum = self.pending_signals.popleft()
            getattr(self, "handle_" + SIGNALS[signum])()

    # -- signal handlers -----------------------------------------------------

    def handle_term(self) -> None:
        if self.config.shutdown_delay > 0 and not self.stopping and self.lame_duck_until is None:
            self._lame_duck()
        else:
            self._stop("graceful")  # a second TERM skips the rest of the delay

    def handle_int(self) -> None:
        self._stop("graceful")  # interactive: no shutdown delay

    def handle_quit(self) -> None:
        self._stop("fast")

    def handle_hup(self, why: str = "SIGHUP") -> None:
        if self.stopping or self.lame_duck_until is not None:
            return
        self.config.run_hook("on_reload", self)  # logged if it raises; the reload goes on
        if self.app is not None:
            # --preload: the app's modules live in this master, and importing
            # them again here would not replace what the workers inherit.
            # A new master (USR2's re-exec) imports the new code, zero-loss.
            log.info("master: %s with --preload: this master cannot import the app again; "
                     "re-executing it as on USR2 (a new master pid imports the new code)", why)
            self.handle_usr2()
            return
        if self.env_file is not None:
            from ..config import ConfigError

            try:
                count = self.env_file.load()
                log.info("master: %s: --env-file %s read again (%d variables)", why, self.env_file.path, count)
            except ConfigError as exc:
                log.error("master: %s: %s; the new workers get the variables as they were", why, exc)
        self.generation += 1
        self.metrics.reloads += 1
        self.reloading = True
        self.next_spawn_at = 0.0  # new code: no backoff left over from the old (a failed reload's replacements)
        count = 0
        for worker in self.workers.values():
            if worker.state != "draining":
                worker.retiring = True
                count += 1
        log.info("master: %s: reloading %d workers (generation %d), new ones first", why, count, self.generation)

    def handle_ttin(self) -> None:
        self.target += 1
        log.info("master: SIGTTIN: workers %d -> %d", self.target - 1, self.target)

    def handle_ttou(self) -> None:
        if self.target <= 1:
            log.info("master: SIGTTOU ignored: already at 1 worker")
            return
        self.target -= 1
        log.info("master: SIGTTOU: workers %d -> %d", self.target + 1, self.target)

    def handle_usr2(self) -> None:
        if self.stopping or self.lame_duck_until is not None or self.upgrade_pid or self.upgrade_notify >= 0:
            log.info("master: SIGUSR2 ignored: %s", "an upgrade is in progress" if self.upgrade_pid or self.upgrade_notify >= 0 else "stopping")
            return
        from . import upgrade

        pid, fd = upgrade.launch(self.sockets.handover_spec())
        self.upgrade_pid = pid
        self.readers[fd] = lambda: self._read_upgrade(fd)
        log.info(
            "master: SIGUSR2: upgrading: new master %d started (%s); this one serves until its workers are ready",
            pid,
            " ".join(upgrade.command_line()),
        )

    def _read_upgrade(self, fd: int) -> None:
        try:
            data = os.read(fd, 512)
        except BlockingIOError:
            return
        except OSError:
            data = b""
        if data.startswith(b"ready"):
            log.info("master: upgrade: new master %d is ready; draining the old workers, then exiting", self.upgrade_pid)
            self._hand_over()
        elif data:
            return
        del self.readers[fd]
        os.close(fd)
        if not data and not self.stopping:
            log.error("master: upgrade failed: new master %d exited before it was ready; this one keeps serving", self.upgrade_pid)
            self.upgrade_pid = 0

    def _hand_over(self) -> None:
        """USR2 done: the new master serves the same sockets. Drain the old
        workers as on a reload and exit; never filter, close or unlink the sockets."""
        self.stopping = "upgraded"
        self.released = True
        self.sockets.uds = {}  # the new master's files now
        now = time.monotonic()
        for worker in self.workers.values():
            if worker.state == "booting":
                self._signal(worker, signal.SIGKILL)
                continue
            worker.state = "draining"
            worker.kill_at = now + self.config.timeout_graceful + KILL_GRACE
            self._signal(worker, signal.SIGTERM)

    def _all_ready(self) -> bool:
        ready = {w.slot for w in self.workers.values() if w.state == "ready"}
        return all(slot in ready for slot in range(self.target))

    def _upgrade_ready(self) -> None:
        """In a new master started by USR2: once every slot has a ready worker, tell the old one."""
        ready = {w.slot for w in self.workers.values() if w.state == "ready"}
        if not all(slot in ready for slot in range(self.target)):
            return
        if self.pidfile is not None:
            from .pidfile import PidFileError

            try:
                self.pidfile.write()  # this master is the one in charge from now on
                log.info("master: upgrade: --pid %s now names %d", self.pidfile.path, os.getpid())
            except PidFileError as exc:
                log.error("master: upgrade: %s", exc)
        try:
            os.write(self.upgrade_notify, b"ready\n")
        except OSError:
            pass  # the old master is gone
        os.close(self.upgrade_notify)
        self.upgrade_notify = -1
        log.info("master: upgrade: every worker ready; the old master drains and exits")

    def handle_usr1(self) -> None:
        from .. import logs

        logs.reopen()
        for worker in self.workers.values():
            self._signal(worker, signal.SIGUSR1)

    def handle_chld(self) -> None:
        pass  # reaping happens every pass

    def _lame_duck(self) -> None:
        """--shutdown-delay: keep serving while load balancers stop routing here."""
        delay = self.config.shutdown_delay
        self.lame_duck_until = time.monotonic() + delay
        self.phase[0] = PHASE_LAME_DUCK
        log.info(
            "master: SIGTERM: shutdown delay %.1fs: serving on, responses with Connection: close, "
            "health checks 503; then the graceful shutdown (a second TERM skips the delay)",
            delay,
        )
        for worker in self.workers.values():
            if worker.state != "draining":
                self._signal(worker, signal.SIGWINCH)  # booting ones read the phase once ready

    def _stop(self, mode: str) -> None:
        if self.stopping == "fast" or (self.stopping == mode):
            if self.stopping == "graceful" and mode == "graceful":
                mode = "fast"  # a second TERM/INT: stop now
            else:
                return
        self.stopping = mode
        if not self.released:
            # Stop taking connections at once, not when the master exits: the
            # workers answer the queued ones, then the last close releases the port.
            self.released = True
            if self.upgrade_notify >= 0:
                # A new master (USR2) stopping before it was ready: the
                # sockets still serve the old master; leave them as they are.
                self.sockets.uds = {}
                log.info("master: upgrade abandoned; the sockets stay with the old master")
            elif self.sockets.refuse_new():
                self.phase[0] = PHASE_STOPPING
                log.info("master: new connections are refused; the workers answer the queued ones")
            else:
                log.info("master: inherited sockets stay open for their owner (new connections queue there)")
        now = time.monotonic()
        signum = signal.SIGTERM if mode == "graceful" else signal.SIGQUIT
        wait = self.config.timeout_graceful + KILL_GRACE if mode == "graceful" else FAST_TIMEOUT
        log.info(
            "master: %s shutdown: stopping %d workers (SIGKILL after %.1fs)",
            mode,
            len(self.workers),
            wait,
        )
        for worker in self.workers.values():
            worker.exit_cause = worker.exit_cause or "shutdown"
            if worker.state == "booting":
                self._signal(worker, signal.SIGKILL)
                continue
            worker.state = "draining"
            worker.kill_at = now + wait
            self._signal(worker, signum)

    # -- workers ---------------------------------------------------------

    def _maintain(self) -> None:
        """Bring every slot to one fresh serving worker; retire replaced ones."""
        now = time.monotonic()
        by_slot: dict[int, list[WorkerProc]] = {}
        for worker in self.workers.values():
            if worker.state != "draining":
                by_slot.setdefault(worker.slot, []).append(worker)
        self._promote_recycle(by_slot)
        for slot in range(self.target):
            workers = by_slot.get(slot, [])
            fresh = [w for w in workers if not w.retiring]
            if not fresh:
                if now >= self.next_spawn_at:
                    self._spawn(slot)
                continue
            if any(w.state == "ready" for w in fresh):
                for worker in workers:
                    if worker.retiring:
                        self._retire(worker, "replaced by a new worker")
        for slot, workers in by_slot.items():
            if slot >= self.target:
                for worker in workers:
                    self._retire(worker, "worker count lowered")
        if self.reloading and not any(w.retiring for w in self.workers.values()):
            self.reloading = False
            log.info("master: reload complete (generation %d)", self.generation)

    def _promote_recycle(self, by_slot) -> None:
        """Recycle one worker at a time, through the reload path."""
        if any(w.retiring and w.recycle for w in self.workers.values()):
            return
        for workers in by_slot.values():
            for worker in workers:
                if worker.recycle and not worker.retiring:
                    worker.retiring = True
                    log.info("master: recycling worker %d: %s; a new worker first", worker.pid, worker.recycle)
                    return

    def _retire(self, worker: WorkerProc, why: str) -> None:
        worker.exit_cause = worker.recycle_cause if worker.recycle else "scale_down" if why == "worker count lowered" else "reload"
        worker.state = "draining"
        worker.kill_at = time.monotonic() + self.config.timeout_graceful + KILL_GRACE
        log.info("master: stopping worker %d (%s)", worker.pid, why)
        self._signal(worker, signal.SIGTERM)

    def _spawn(self, slot: int) -> None:
        config = self.config
        sockets = self.sockets.for_slot(slot)
        max_requests = 0
        if config.limit_max_requests:
            max_requests = config.limit_max_requests + random.randint(0, config.max_requests_jitter)
        read_fd, write_fd = os.pipe()
        sys.stderr.flush()
        if self.app is not None:
            gc.freeze()  # --preload: what the master made since, shared too
        pid = os.fork()
        if pid == 0:  # child
            code = 1
            try:
                os.close(read_fd)
                for fd in [w.fd for w in self.workers.values()] + [self._wakeup_r, self._wakeup_w, self.upgrade_notify]:
                    if fd >= 0:
                        os.close(fd)
                for fd in set(self.readers) | set(self.writers):  # reload watcher, metrics endpoint
                    os.close(fd)
                for sock in self.sockets.all():
                    if sock not in sockets:
                        sock.close()  # another slot's socket: only the master keeps it
                os.set_blocking(write_fd, False)
                code = Worker(config, sockets, write_fd, max_requests=max_requests, slot=slot, phase=self.phase,
                              private=self.sockets.private(slot), inherited=self.sockets.inherited,
                              app=self.app).run()
            except BaseException:
                log.exception("worker crashed")
            finally:
                logging.shutdown()
                os._exit(code)
        os.close(write_fd)
        os.set_blocking(read_fd, False)
        worker = self.workers[pid] = WorkerProc(pid, slot, read_fd, self.generation)
        if config.workers_lifetime:
            worker.retire_at = worker.started + config.workers_lifetime + random.uniform(0, config.workers_lifetime_jitter)
        self.metrics.starts += 1
        log.info("master: started worker %d (slot %d, generation %d)", pid, slot, self.generation)

    def _read_worker(self, fd: int, worker: WorkerProc | None = None) -> bool:
        """Read what the worker's pipe holds now (one read) and act on each
        whole line. ``worker``: one that has exited (out of ``self.workers``),
        whose last words count but whose "ready" and heartbeats no longer do.
        Returns True if it read bytes (more may follow)."""
        exited = worker is not None
        if worker is None:
            worker = next((w for w in self.workers.values() if w.fd == fd), None)
            if worker is None:
                return False
        try:
            data = os.read(fd, 65536)
        except BlockingIOError:
            return False
        except OSError:
            data = b""
        if not data:
            os.close(fd)
            worker.fd = -1
            return False
        worker.buffer += data
        *lines, worker.buffer = worker.buffer.split(b"\n")
        for line in lines:
            line = line.decode("utf-8", "replace")
            if exited and line.startswith(("ready", "hb ")):
                continue
            self._message(worker, line)
        return True

    def _message(self, worker: WorkerProc, line: str) -> None:
        kind, _, rest = line.partition(" ")
        worker.last_heartbeat = time.monotonic()
        if kind == "hb":
            try:
                worker.in_flight, worker.connections, worker.requests = map(int, rest.split())
            except ValueError:
                pass
            if worker.state == "ready" and not worker.recycle:
                self._check_limits(worker)
        elif kind == "ready":
            if worker.state == "booting":
                worker.state = "ready"
            self.boot_failures = 0
            self.ever_ready = True
            log.info("master: worker %d ready (%.2fs)", worker.pid, time.monotonic() - worker.started)
            if self.upgrade_notify >= 0:
                self._upgrade_ready()
            if not self.announced_ready and self._all_ready():
                self.announced_ready = True
                self.config.run_hook("when_ready", self)
        elif kind == "m":
            self.metrics.worker_report(worker, rest, self.sockets)
        elif kind == "recycle":
            if rest.isdigit():  # its count now: the last heartbeat's may be a second old
                worker.requests = max(worker.requests, int(rest))
            if not worker.recycle:
                worker.recycle = f"{worker.requests} requests served (--limit-max-requests)"
        elif kind == "error":
            worker.error = rest
        elif kind == "tb":
            worker.traceback.append(rest)

    def _check_limits(self, worker: WorkerProc) -> None:
        """Each heartbeat (once a second) of a serving worker: --workers-max-rss
        (its RSS, sampled) and --workers-lifetime. Either one marks it for
        recycling, which goes through the reload path: a new worker in its
        slot first, then this one drains."""
        config = self.config
        if config.workers_max_rss:
            worker.rss = rss(worker.pid) or 0
            if worker.rss > config.workers_max_rss * MIB:
                worker.recycle_cause = "max_rss"
                worker.recycle = (
                    f"RSS {worker.rss / MIB:.0f} MiB over --workers-max-rss {config.workers_max_rss} MiB "
                    f"after {worker.requests} requests"
                )
                return
        if worker.retire_at is not None and time.monotonic() >= worker.retire_at:
            worker.recycle_cause = "lifetime"
            worker.recycle = f"{time.monotonic() - worker.started:.1f}s old (--workers-lifetime {config.workers_lifetime:g}s)"

    def _reap(self) -> None:
        while True:
            try:
                pid, status = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                return
            if pid == 0:
                return
            worker = self.workers.pop(pid, None)
            if worker is None:
                if pid == self.upgrade_pid:
                    log.log(
                        logging.INFO if self.stopping else logging.ERROR,
                        "master: new master %d %s",
                        pid,
                        _how(status),
                    )
                    continue
                if pid == self.watcher_pid:
                    self.watcher_pid = 0
                    log.error("master: reload watcher %d %s; --reload is off from now on", pid, _how(status))
                continue
            # Its last words (a boot failure's "error" and "tb" lines) may
            # still be in the pipe: read them all, up to the end the exit
            # made, before judging the exit. (It is out of self.workers
            # already, so it is named here.)
            for _ in range(64):  # 64 reads of 64 KB at most
                if worker.fd < 0 or not self._read_worker(worker.fd, worker):
                    break
            if worker.fd >= 0:
                os.close(worker.fd)
                worker.fd = -1
            self._exited(worker, status)
            if worker.slot >= self.target and not any(w.slot == worker.slot for w in self.workers.values()):
                # reuseport: nobody serves this slot any more; close its socket
                # so the kernel stops queueing connections on it.
                self.sockets.release_slot(worker.slot)

    def _exited(self, worker: WorkerProc, status: int) -> None:
        code = os.waitstatus_to_exitcode(status)
        how = _how(status)
        cause = worker.exit_cause or ("boot_failure" if worker.state == "booting" else "crash")
        self.metrics.worker_exited(worker, cause)
        if worker.state == "draining" and code == 0:
            log.info("master: worker %d exited (code 0)", worker.pid)
            return
        if worker.state == "booting":
            self._boot_failed(worker, code, how)
            return
        level = logging.INFO if worker.state == "draining" and code in (0, -signal.SIGKILL) else logging.ERROR
        log.log(level, "master: worker %d %s %s", worker.pid, how, worker.doing())

    def _boot_failed(self, worker: WorkerProc, code: int, how: str) -> None:
        if self.stopping:
            return
        reason = worker.error or how
        if worker.abandoned or (worker.generation == self.failed_generation and worker.started <= self.failed_at):
            log.info("master: worker %d of the failed reload exited (%s)", worker.pid, reason)
            return
        record = log.makeRecord(log.name, logging.ERROR, __file__, 0, "master: worker %d failed to boot: %s",
                                (worker.pid, reason), None)
        record.exc_text = "\n".join(worker.traceback) or None  # the app's traceback, once (text and JSON logs)
        log.handle(record)
        if self.reloading and any(w.retiring for w in self.workers.values()):
            # New code does not boot: keep the old workers, stop the new ones.
            log.error("master: reload failed; the previous workers keep serving (%s)", reason)
            self.reloading = False
            self.failed_generation = worker.generation
            self.failed_at = time.monotonic()  # its workers started before this are its own
            self.metrics.reloads_failed += 1
            for other in self.workers.values():
                if other.retiring:
                    other.retiring = False
                elif other.state == "booting":
                    other.abandoned = True
                    self._signal(other, signal.SIGKILL)
            return
        # A replacement (a crash, a recycle) fails too: after a failed reload
        # it imports the code that failed. Back off as on a first boot, so
        # the workers that work keep serving (a recycling one until its
        # replacement is ready) instead of a respawn storm.
        self.boot_failures += 1
        if not self.ever_ready and (code == EXIT_CONFIG or self.boot_failures >= MAX_BOOT_FAILURES):
            self.fatal = reason
            self.exit_code = EXIT_CONFIG if code == EXIT_CONFIG else EXIT_BOOT
            self._stop("fast")
            return
        delay = min(0.1 * 2 ** (self.boot_failures - 1), BACKOFF_MAX)
        self.next_spawn_at = time.monotonic() + delay
        after = " (the code of the failed reload; fix it and HUP)" if worker.generation == self.failed_generation else ""
        log.info("master: next boot attempt in %.1fs (%d consecutive failures)%s", delay, self.boot_failures, after)

    def _deadline(self, worker: WorkerProc) -> float | None:
        """When the master must next act on ``worker``: its SIGKILL is due, or
        its boot (--timeout-boot) or heartbeat (--timeout-worker) allowance ends."""
        if worker.kill_at is not None:
            return worker.kill_at
        config = self.config
        if worker.state == "booting":
            return worker.started + config.timeout_boot if config.timeout_boot else None
        return worker.last_heartbeat + config.timeout_worker if config.timeout_worker else None

    def _enforce_deadlines(self) -> None:
        now = time.monotonic()
        for worker in list(self.workers.values()):
            deadline = self._deadline(worker)
            if deadline is None or now < deadline:
                continue
            worker.exit_cause = "timeout"
            if worker.kill_at is not None:
                log.warning("master: worker %d did not exit in time; SIGKILL", worker.pid)
                self._signal(worker, signal.SIGKILL)
                worker.kill_at = now + 1.0
                continue
            if worker.state == "booting":
                # A hung import or lifespan startup: its exit is a failed boot
                # (backoff, or the old workers keep serving a reload).
                worker.error = f"worker {worker.pid} not ready after {self.config.timeout_boot:g}s (--timeout-boot)"
                log.error("master: %s; dumping its stack, then killing it", worker.error)
            else:
                log.error(
                    "master: worker %d loop blocked for %.1fs (--timeout-worker %.1f); dumping its stack, then killing it",
                    worker.pid,
                    now - worker.last_heartbeat,
                    self.config.timeout_worker,
                )
                worker.state = "draining" if worker.state == "draining" else "stuck"
            self._signal(worker, signal.SIGUSR2)
            worker.kill_at = now + STACK_DUMP_GRACE

    # -- --reload ------------------------------------------------------------

    def _start_watcher(self) -> None:
        from .reload import start_watcher

        def close_in_child() -> None:
            os.close(self._wakeup_r)
            os.close(self._wakeup_w)
            for sock in self.sockets.all():
                sock.close()

        self.watcher_pid, fd = start_watcher(self.config, close_in_child)
        self.readers[fd] = lambda: self._read_watcher(fd)

    def _read_watcher(self, fd: int) -> None:
        try:
            data = os.read(fd, 65536)
        except BlockingIOError:
            return
        except OSError:
            data = b""
        if not data:
            del self.readers[fd]
            os.close(fd)
            return
        self._watcher_buffer += data
        *lines, self._watcher_buffer = self._watcher_buffer.split(b"\n")
        for line in lines:
            kind, _, paths = line.decode("utf-8", "replace").partition(" ")
            if kind == "changed":
                names = paths.split(",")
                shown = ", ".join(names[:3]) + (f" and {len(names) - 3} more" if len(names) > 3 else "")
                self.handle_hup(f"--reload: {shown} changed")

    def _stop_watcher(self) -> None:
        if self.watcher_pid:
            try:
                os.kill(self.watcher_pid, signal.SIGTERM)
                os.waitpid(self.watcher_pid, 0)
            except (ProcessLookupError, ChildProcessError):
                pass
            self.watcher_pid = 0

    def _signal(self, worker: WorkerProc, signum: int) -> None:
        try:
            os.kill(worker.pid, signum)
        except ProcessLookupError:
            pass
        except OSError as exc:  # pragma: no cover
            if exc.errno != errno.ESRCH:
                raise


MIB = 1024 * 1024


def _how(status: int) -> str:
    code = os.waitstatus_to_exitcode(status)
    return f"exited with code {code}" if code >= 0 else f"was killed by {signal.Signals(-code).name}"
