"""One worker process: import the app, run one event loop, drain in order.

Runs in a child forked by the master (``supervisor/master.py``); the event
loop is created here, after the fork. The worker talks to the master over a
pipe, one line per message (``channel``):

* ``ready`` once lifespan startup is done and the sockets are served;
* ``hb IN_FLIGHT CONNECTIONS REQUESTS`` every second, from the loop (a loop
  that stops sending it is blocked: the master dumps its stack and kills it);
* ``m JSON`` with each heartbeat when ``--metrics-bind`` is on: this
  worker's totals since it started (``io/metrics.py``), once more on exit;
* ``recycle`` when ``--limit-max-requests`` is reached;
* ``error MESSAGE`` before exiting on a boot failure, after the app's
  traceback, if any, one ``tb LINE`` per line.

Signals: TERM = graceful shutdown, QUIT = fast shutdown, USR1 = reopen logs,
USR2 = dump stacks (faulthandler, used by the master on a blocked loop),
WINCH = the master changed the shared phase (``--shutdown-delay`` begins).
INT, HUP, TTIN, TTOU are the master's; the worker ignores them.

The master also shares one byte with its workers, the *phase* (``PHASE_*``).
When it stops (rather than retiring one worker), it sets ``PHASE_STOPPING``
and makes the sockets refuse new connections before sending TERM or QUIT:
then each worker also accepts what is left in the kernel's queue (answered
with ``Connection: close``; 503 on QUIT) before closing its copy of the
sockets, so queued connections are served and the port is released.

Graceful shutdown, in order, each step logged: stop accepting; let requests
in flight finish (bounded by --timeout-graceful) while every keep-alive
connection gets its next response with ``Connection: close`` and idle ones
are closed after a short grace; abort what is left at the deadline; run
lifespan shutdown; exit 0.
"""

from __future__ import annotations

import asyncio
import faulthandler
import logging
import os
import signal
import socket
import sys
import time

from .. import logs
from .._mode import mode as build_mode
from ..interfaces.asgi import ASGIHandler
from ..interfaces.asgi_ws import WebSocketHandler
from ..interfaces.lifespan import Lifespan, LifespanFailure
from ..interfaces.wsgi import WSGIHandler, WSGIOverASGI
from ..interfaces.asgi_h2 import H2Handler
from ..io.h1 import H1Connection
from ..io.h2 import H2Connection, prior_knowledge, upgrade_h2c
from ..io.tls import TLSConfigError, TLSHandshake, TLSInfo, build_context
from ..io.health import HealthCheck
from ..io.static import StaticMount, check_mounts
from ..io.proxy import ProxyPolicy
from ..io.metrics import WorkerMetrics
from ..io.overload import Overload
from ..io.state import ServerState
from ..io.ws import WebSocketUpgrade
from ..loader import AppLoadError, FactoryError, check_interface, detect_interface, import_app
from .accept import AcceptGate, Listener

log = logging.getLogger("corral.error")

EXIT_OK = 0
EXIT_CONFIG = 2  # the app cannot be imported: no point retrying
EXIT_BOOT = 3  # lifespan startup failed or the app raised at import
EXIT_STUCK = 4  # a WSGI request ran past --timeout-worker in an app thread
# A keep-alive connection idle this long while draining is closed.
DRAIN_IDLE_GRACE = 0.5
DRAIN_POLL = 0.05
# Fast shutdown: how long connections taken from the queue get for their 503.
FAST_QUEUE_GRACE = 1.0

# The shared phase byte (set by the master, read by workers on TERM/QUIT).
PHASE_SERVING = 0
PHASE_LAME_DUCK = 1  # --shutdown-delay: serve on, every response with Connection: close
PHASE_STOPPING = 2  # the master stops: take the queued connections, release the port


def new_event_loop() -> asyncio.AbstractEventLoop:
    try:
        import uvloop
    except ImportError:
        log.info("uvloop is not installed; using asyncio's event loop")
        return asyncio.new_event_loop()
    return uvloop.new_event_loop()


class Worker:
    def __init__(self, config, sockets, channel_fd: int | None, *, max_requests: int = 0, slot: int = 0,
                 phase=None, private=(), inherited=(), app=None) -> None:
        self.config = config
        self.sockets = sockets  # every listener, each served here (worker/accept.py)
        # Sockets this worker alone serves (--accept reuseport): no exclusive wake-ups needed.
        self.private = {sock.fileno() for sock in private}
        # Inherited sockets (--fd, systemd): at stop, their queue is left to their owner.
        self.inherited = {sock.fileno() for sock in inherited}
        self.channel_fd = channel_fd
        self.max_requests = max_requests
        self.slot = slot
        self.pid = os.getpid()
        self.loop: asyncio.AbstractEventLoop | None = None
        self.state: ServerState | None = None
        self.listeners: list[Listener] = []
        self.plain_http = False  # the first bytes are HTTP/1.1 (or an h2c preface): the overload sieve may answer them
        self.gate: AcceptGate | None = None
        self.lifespan: Lifespan | None = None
        self.stop_mode: asyncio.Future | None = None
        self.interface = "asgi"
        self.wsgi: WSGIHandler | None = None
        self.phase = phase  # shared with the master (mmap), or None
        self.app = app  # --preload: imported by the master before the fork
        self.take_queue = False  # at stop: accept what the kernel queued, then close the sockets
        self._tick_due = 0.0

    # -- entry point -------------------------------------------------------

    def run(self) -> int:
        self._reset_signals()
        self._install_stack_dump()
        self.pid = os.getpid()
        config = self.config
        logs.set_title(f"corral: worker {self.slot} [{config.app}]")
        failed = config.run_hook("post_fork", self)  # before the app: per-worker set-up (OpenTelemetry, pools)
        if failed is not None:
            self.report(f"error post_fork hook raised {type(failed).__name__}: {failed}")
            return EXIT_BOOT
        try:
            app = self.app if self.app is not None else import_app(config.app, factory=config.factory, app_dir=config.app_dir)
        except AppLoadError as exc:
            self.report(f"error {exc}")
            return EXIT_CONFIG
        except FactoryError as exc:
            self._report_traceback(exc.__cause__, f"error while calling the factory {config.app}")
            self.report(f"error {exc}")
            # A module the factory imports is missing: no point retrying (see below).
            return EXIT_CONFIG if isinstance(exc.__cause__, ImportError) else EXIT_BOOT
        except Exception as exc:  # the app's own module raised while importing
            self._report_traceback(exc, f"error while importing {config.app}")
            self.report(f"error {config.app} raised {type(exc).__name__} while importing: {exc}")
            # A missing module (or name) inside the app is no more likely to
            # appear on a retry than a missing top-level one: exit 2, and the
            # master gives up on a first boot at once.
            return EXIT_CONFIG if isinstance(exc, ImportError) else EXIT_BOOT
        try:
            # After the fork, from the files as they are now: a reload (HUP)
            # serves rotated certificates.
            context = build_context(config)
        except TLSConfigError as exc:
            self.report(f"error {exc}")
            return EXIT_CONFIG
        interface = self.interface = detect_interface(app, config.interface)
        problem = check_interface(app, interface, config.interface, config.app)
        if problem:
            self.report(f"error {problem}")
            return EXIT_CONFIG
        loop = self.loop = new_event_loop()
        if interface != "wsgi":
            # Not under WSGI: there the thread's current loop is the app's, as
            # under gunicorn (asyncio.get_event_loop() in a view gets a loop of
            # its own, not the worker's, which runs and would refuse it).
            asyncio.set_event_loop(loop)
        state = self.state = ServerState(config, loop)
        if config.metrics_bind:  # before the handlers: their cycles then read the clock
            state.metrics = WorkerMetrics()
        if interface == "wsgi":  # one handler (environ, pool, stuck-thread check) for HTTP/1.1 and HTTP/2
            self.wsgi = WSGIHandler(app, state)
        if config.http != "1":
            state.h2_handler = H2Handler(WSGIOverASGI(self.wsgi) if interface == "wsgi" else app, state).new_cycle
        # The phases of a connection (io/switch.py): [PROXY header] -> [TLS
        # handshake] -> HTTP/1.1 or HTTP/2; each factory makes the next.
        first = self._http_connection
        self.plain_http = context is None and config.http != "2"
        if context is not None:
            tls = TLSInfo(context, config)
            h2 = lambda: H2Connection(state)  # noqa: E731
            protocols = {"h2": h2, "http/1.1": self._http_connection, None: h2 if config.http == "2" else self._http_connection}
            first = lambda: TLSHandshake(state, tls, protocols)  # noqa: E731
        elif config.http == "2":
            first = lambda: H2Connection(state)  # noqa: E731
        elif config.http == "auto":
            # H1Connection looks for the HTTP/2 preface first, and takes Upgrade: h2c
            state.h2c = True
            state.h2c_upgrade = upgrade_h2c
            state.h2c_prior_knowledge = prior_knowledge
        self._connection = ProxyPolicy(state, first).connection if config.proxy_protocol != "off" else first
        if interface == "wsgi":
            state.handler = self.wsgi.new_cycle
        else:
            state.handler = ASGIHandler(app, state).new_cycle
        if interface != "wsgi":  # WSGI has no WebSockets: upgrades are answered over HTTP
            state.upgrade_handler = WebSocketUpgrade(state, WebSocketHandler(app, state))
        if config.static_path_mount:  # files before the app; no mount, no wrapper
            mounts = check_mounts(config.static_path_mount)
            state.handler = StaticMount(mounts, state.handler, state)
            if state.h2_handler is not None:
                state.h2_handler = StaticMount(mounts, state.h2_handler, state)
        if config.health_path:  # every protocol's requests pass through it
            state.handler = HealthCheck(config.health_path, state.handler, config.access_log)
            if state.h2_handler is not None:
                state.h2_handler = HealthCheck(config.health_path, state.h2_handler, config.access_log)
        state.limit_max_requests(self.max_requests, lambda: self.report(f"recycle {state.requests}"))
        if config.limit_queue_delay:  # overload control (io/overload.py)
            state.overload = Overload(state, config.limit_queue_delay)
        lifespan_mode = "off" if interface == "wsgi" else config.lifespan
        self.lifespan = Lifespan(app, lifespan_mode, state.lifespan_state)
        try:
            return loop.run_until_complete(self._main())
        finally:
            config.run_hook("worker_exit", self)  # logged if it raises; the exit goes on
            if state.access is not None:
                state.access.close()  # the last lines, whatever the exit
            state.stepper.close()
            loop.close()

    async def _main(self) -> int:
        loop = self.loop
        self.stop_mode = loop.create_future()
        self._schedule_tick()
        if self.state.overload is not None:
            self.state.overload.start()
        for signum, mode in ((signal.SIGTERM, "graceful"), (signal.SIGQUIT, "fast")):
            loop.add_signal_handler(signum, self._stop_signal, mode)
        loop.add_signal_handler(signal.SIGUSR1, self._reopen_logs)
        loop.add_signal_handler(signal.SIGWINCH, self._phase_changed)
        try:
            await self.lifespan.startup()
        except LifespanFailure as exc:
            self.report(f"error {exc}")
            return EXIT_BOOT
        overload = self.state.overload
        # The overload control's sieve answers late plain-HTTP requests at
        # accept (io/overload.py); not where the first bytes are TLS or HTTP/2 only.
        sieve = overload if overload is not None and self.plain_http else None
        for sock in self.sockets:  # one Listener per listening socket; the hot path never sees how many
            exclusive = sock.fileno() not in self.private  # shared with the other workers: one wakes
            listener = Listener(loop, sock, self._connection, self.config.backlog, exclusive, sieve)
            await listener.start()
            self.listeners.append(listener)
            if overload is not None and sock.family in (socket.AF_INET, socket.AF_INET6):
                overload.listeners.append(sock)
        if sieve is not None:
            overload.on_watch = self._sieve_on
        self.gate = self.state.gate = AcceptGate(
            loop,
            self.listeners,
            self.config.limit_connections,
            shared_with_others=self.config.workers > 1 and any(listener.exclusive for listener in self.listeners),
            pid=self.pid,
        )
        if self.state.access is not None:
            self.state.access.start_watchdog()
        self.report("ready")
        self._phase_changed()
        log.info(
            "worker %d ready (%s, %s, %s)", self.pid, self.interface, type(self.loop).__module__.split(".")[0], build_mode()
        )
        mode = await self.stop_mode
        code = await self._fast_shutdown() if mode == "fast" else await self._graceful_shutdown()
        self._report_metrics()  # the last counts, so totals stay exact across reloads
        return code

    def _reopen_logs(self) -> None:
        if self.state.access is not None:
            try:
                self.state.access.reopen()
            except OSError as exc:  # it keeps the old file (e.g. --user cannot create the new one)
                log.warning("worker %d: cannot reopen the access log %s (%s); still writing to the old one",
                            self.pid, self.state.access.path, exc.strerror)
        logs.reopen()

    def _sieve_on(self, on: bool) -> None:
        for listener in self.listeners:
            listener.sieve_on(on)

    def _connection(self):
        """The listeners' protocol factory (replaced by the PROXY protocol's or TLS's when on)."""
        return H1Connection(self.state)

    def _http_connection(self):
        return H1Connection(self.state)

    def _phase_changed(self) -> None:
        """SIGWINCH from the master: the shared phase changed (shutdown delay)."""
        if self.phase is not None and self.phase[0] == PHASE_LAME_DUCK and not self.state.draining:
            # Still accepting and serving; responses carry Connection: close
            # and --health-path answers 503, so load balancers move away.
            self.state.draining = True
            log.info("worker %d: shutdown delay: serving on, every response with Connection: close", self.pid)

    def _stop_signal(self, mode: str) -> None:
        if self.phase is not None and self.phase[0] == PHASE_STOPPING:
            self.take_queue = True
        self.stop(mode)

    def stop(self, mode: str = "graceful") -> None:
        if self.stop_mode is not None and not self.stop_mode.done():
            self.stop_mode.set_result(mode)
        elif mode == "fast" and self.state is not None:
            # A second, faster stop during a graceful one: cut it short.
            for conn in list(self.state.connections):
                conn.abort()

    # -- shutdown ------------------------------------------------------------

    def _stop_accepting(self) -> None:
        if self.gate is not None:
            self.gate.stop()
        for listener in self.listeners:
            listener.stop()

    async def _take_queued(self) -> int:
        """The master stops and no new connection can join the queue: accept
        the ones already there (served like any other during the drain), then
        close this worker's copies of the sockets so the port is released."""
        count = 0
        if self.take_queue:
            tasks = []
            for sock in self.sockets:
                if sock.fileno() in self.inherited:
                    continue  # its owner's queue: nothing stopped new connections joining it
                sock.setblocking(False)
                while True:
                    try:
                        conn, _ = sock.accept()
                    except (BlockingIOError, InterruptedError):
                        break
                    except ConnectionAbortedError:
                        continue
                    except OSError as exc:
                        log.warning("worker %d: accepting queued connections: %s", self.pid, exc)
                        break
                    conn.setblocking(False)
                    tasks.append(self.loop.connect_accepted_socket(self._connection, conn))
            if tasks:
                results = await asyncio.gather(*tasks, return_exceptions=True)
                count = sum(1 for r in results if not isinstance(r, BaseException))
        for sock in self.sockets:
            sock.close()
        return count

    async def _graceful_shutdown(self) -> int:
        loop, state, config = self.loop, self.state, self.config
        pid = self.pid
        self._stop_accepting()
        state.draining = True
        # Connections the loop accepted in the pass the stop landed in have
        # their connection_made queued behind this step: let them be made,
        # so the drain counts and answers them.
        await asyncio.sleep(0)
        queued = await self._take_queued()
        # Idle times were taken with the once-a-second clock: give every idle
        # keep-alive connection the whole grace from now, so none is closed
        # while its client is about to send.
        state.refresh()
        for conn in state.connections:
            if conn.idle_since:
                conn.idle_since = state.now
        total = len(state.connections)
        log.info(
            "worker %d: stopped accepting; draining %d requests in flight on %d connections and %d websockets "
            "(%d taken from the queue)",
            pid,
            state.in_flight,
            total,
            len(state.upgraded),
            queued,
        )
        deadline = loop.time() + config.timeout_graceful
        # WebSockets get their 1001 alongside the HTTP drain: one carried by an
        # HTTP/2 stream (RFC 8441) keeps its connection open until it ends.
        websockets = loop.create_task(self._close_upgraded(config.timeout_graceful)) if state.upgraded else None
        while (state.connections or state.handshakes) and loop.time() < deadline:
            state.refresh()
            state.sweep(idle_timeout=DRAIN_IDLE_GRACE)
            await asyncio.sleep(DRAIN_POLL)
        left = len(state.connections) + len(state.handshakes)
        if left:
            log.warning(
                "worker %d: graceful timeout (%.1fs): %d requests still in flight; closing %d connections",
                pid,
                config.timeout_graceful,
                state.in_flight,
                left,
            )
            for conn in list(state.connections) + list(state.handshakes):
                conn.abort()
            await asyncio.sleep(0)
        log.info("worker %d: connections closed (%d)", pid, total)
        if state.overload is not None:
            state.overload.stop()  # an episode still open is logged
        if websockets is not None:
            await websockets
        await self.lifespan.shutdown(config.timeout_graceful)
        counters = state.counters
        log.info(
            "worker %d: lifespan shutdown complete; exiting (served %d requests on %d connections; "
            "503 busy: %d, 503 overloaded: %d, bad requests: %d, timeouts: %d)",
            pid,
            state.requests,
            counters["connections"],
            counters["rejected_busy"],
            counters["shed_queue_delay"],
            counters["bad_requests"],
            counters["timeouts"],
        )
        return EXIT_OK

    async def _close_upgraded(self, timeout: float) -> None:
        """Close WebSocket (upgraded) connections with 1001 Going Away."""
        upgraded = list(self.state.upgraded)
        if not upgraded:
            return
        log.info("worker %d: closing %d websockets with 1001 (timeout %.1fs)", self.pid, len(upgraded), timeout)
        done, pending = await asyncio.wait(
            [self.loop.create_task(conn.going_away()) for conn in upgraded], timeout=timeout
        )
        for task in pending:
            task.cancel()
        for conn in list(self.state.upgraded):
            conn.abort()
        log.info("worker %d: websockets closed (%d, %d cut at the deadline)", self.pid, len(upgraded), len(pending))

    async def _fast_shutdown(self) -> int:
        state = self.state
        self._stop_accepting()
        conns = list(state.connections) + list(state.upgraded) + list(state.handshakes)
        count = len(conns)
        for conn in conns:
            conn.abort()
        # Connections still queued are not reset: each request gets a 503.
        state.draining = state.refusing = True
        if state.overload is not None:
            state.overload.stop()
        state.concurrency_limit = state.limit_concurrency = 0
        await asyncio.sleep(0)  # connections accepted as the stop landed are made: 503 too (_graceful_shutdown)
        queued = await self._take_queued()
        deadline = self.loop.time() + FAST_QUEUE_GRACE
        while (state.connections or state.handshakes) and self.loop.time() < deadline:
            await asyncio.sleep(DRAIN_POLL)
        for conn in list(state.connections) + list(state.handshakes):
            conn.abort()
        log.info("worker %d: fast shutdown, %d connections aborted, %d queued ones answered 503", self.pid, count, queued)
        return EXIT_OK

    # -- clock, heartbeat, master channel ----------------------------------

    def _schedule_tick(self) -> None:
        # On the second, so the cached Date header changes when it should.
        delay = 1.0 - (time.time() % 1.0) + 0.001
        self._tick_due = self.loop.time() + delay
        self.loop.call_later(delay, self._tick)

    def _tick(self) -> None:
        # Each duty on its own: one that raises is logged and the others (the
        # Date header, the timeouts, the heartbeat) still run, now and every
        # second after (the next tick is scheduled first).
        metrics = self.state.metrics
        if metrics is not None:  # event-loop lag: how late this tick runs
            metrics.loop_lag = max(metrics.loop_lag, self.loop.time() - self._tick_due)
        self._schedule_tick()
        state = self.state
        self._duty("clock", state.refresh)
        self._duty("timeouts", state.sweep)
        if self.wsgi is not None and self.wsgi.pool is not None and self.config.timeout_worker:
            self._duty("WSGI thread check", self._check_wsgi_threads)
        self._duty("heartbeat", self._heartbeat)

    @staticmethod
    def _duty(name: str, duty) -> None:
        try:
            duty()
        except Exception:
            log.exception("worker tick: %s failed", name)

    def _heartbeat(self) -> None:
        self._report_counts()
        self._report_metrics()

    def _check_wsgi_threads(self) -> None:
        """--threads > 1: the loop runs on while an app thread blocks, so a
        request running past --timeout-worker is caught here, the gunicorn
        way: every thread's stack is dumped and the worker is replaced."""
        age, cycle = self.wsgi.longest_running(self.state.now)
        if age < self.config.timeout_worker:
            return
        request = cycle.request
        log.error(
            "worker %d: WSGI request %s %s running for %.1fs (--timeout-worker %.1f); dumping stacks, exiting",
            self.pid, request.method, request.path, age, self.config.timeout_worker,
        )
        faulthandler.dump_traceback(file=sys.stderr, all_threads=True)
        for handler in logging.getLogger("corral.error").handlers:
            handler.flush()
        os._exit(EXIT_STUCK)

    def _report_metrics(self) -> None:
        if self.state is not None and self.state.metrics is not None:
            self.report("m " + self.state.metrics.snapshot(self.state))

    def _report_traceback(self, exc: BaseException, what: str) -> None:
        """The app's traceback at boot goes to the master (``tb LINE`` each),
        which logs it with its "failed to boot" line: once, however many
        workers fail alike at once (the master stops at the first)."""
        if self.channel_fd is None:
            log.error(what, exc_info=exc)
            return
        import traceback

        for line in "".join(traceback.format_exception(type(exc), exc, exc.__traceback__)).rstrip("\n").split("\n"):
            self.report("tb " + line)

    def report(self, message: str) -> None:
        if self.channel_fd is None:
            return
        try:
            os.write(self.channel_fd, message.encode("utf-8", "replace")[:4000] + b"\n")
        except BlockingIOError:
            pass
        except OSError:
            # The master is gone: nobody supervises us any more.
            self.channel_fd = None
            self.stop("graceful")

    @staticmethod
    def _reset_signals() -> None:
        signal.set_wakeup_fd(-1)
        for signum in (signal.SIGTERM, signal.SIGQUIT, signal.SIGUSR1, signal.SIGCHLD):
            signal.signal(signum, signal.SIG_DFL)
        for signum in (signal.SIGINT, signal.SIGHUP, signal.SIGTTIN, signal.SIGTTOU):
            signal.signal(signum, signal.SIG_IGN)
        _die_with_parent()

    def _install_stack_dump(self) -> None:
        """USR2 (the master, on a blocked loop, before its SIGKILL): the stacks
        are dumped from C (faulthandler, even while the app holds the GIL in C
        code), then, chained, a Python handler reports this worker's counts
        (the heartbeat the blocked loop cannot send), so the master's line
        says what it was doing. It runs where the app is stuck in Python code
        or in a call that lets signals in (sleep, I/O)."""
        signal.signal(signal.SIGUSR2, self._report_counts)
        faulthandler.register(signal.SIGUSR2, file=sys.stderr, all_threads=True, chain=True)

    def _report_counts(self, signum=None, frame=None) -> None:
        state = self.state
        if state is not None:
            self.report(f"hb {state.in_flight} {len(state.connections) + len(state.upgraded)} {state.requests}")


def _die_with_parent() -> None:
    """Linux: get SIGTERM if the master dies, so no worker is left orphaned."""
    try:
        import ctypes

        libc = ctypes.CDLL(None, use_errno=True)
        PR_SET_PDEATHSIG = 1
        libc.prctl(PR_SET_PDEATHSIG, signal.SIGTERM)
    except (OSError, AttributeError):  # pragma: no cover - not Linux
        pass
