"""`autoglm run` as a process: probes, leader election, then the controller until a signal; controller-runtime's
manager in small.

With leader election, nothing but the probes and the Lease runs until this process holds the Lease; then kopf's
watches, the workers and every loop start. A leader that loses the Lease exits at once (status 1, as
controller-runtime's manager does): its workers may be in the middle of writes, and a new process starts clean
as a standby. A clean stop (SIGTERM, SIGINT) stops the controller, waits for its last writes to end, and then
releases the Lease, so a standby takes over within its retry period; kopf's watches wind down after that.
"""

from __future__ import annotations

import asyncio
import faulthandler
import io
import logging
import os
import signal
import threading
from collections.abc import Callable
from types import FrameType

from autoglm.shell.controllers import OperatorContext, run_kopf
from autoglm.shell.health import HealthServer
from autoglm.shell.leader import LeaderElector

LOST_EXIT_STATUS = 1
logger = logging.getLogger(__name__)


def serve(
    context: OperatorContext,
    namespaces: list[str],
    elector: LeaderElector | None = None,
    health_url: str | None = None,
) -> int:
    """Run until stopped; the process's exit status."""
    _dump_stacks_on_usr1()
    running, controller_ready = threading.Event(), threading.Event()
    # SIGTERM or SIGINT before kopf's loop has its own handlers (while waiting for the Lease, or in the moment
    # after it is acquired) stops the controller as cleanly as one after: without this a rolling update's SIGTERM
    # in that moment killed the process holding the Lease, and the standby waited out the lease duration.
    stop_requested = threading.Event()
    stop_controller: list[Callable[[], object]] = []  # set once the controller's loop runs

    def request_stop(signum: int, _: FrameType | None) -> None:
        logger.info("stopped by signal %d before the controller started", signum)
        stop_requested.set()
        for stop in stop_controller:
            stop()

    async def controller() -> None:
        # An asyncio flag: kopf waits on a threading.Event in an executor thread, which asyncio.run would then
        # wait for at exit, forever, when the stop came as a signal kopf handled itself.
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        stop_controller.append(lambda: loop.call_soon_threadsafe(stop.set))
        if stop_requested.is_set():
            stop.set()
        await run_kopf(context, namespaces, stop_flag=stop, ready_flag=controller_ready, on_stopped=stand_down)

    previous = {sig: signal.signal(sig, request_stop) for sig in (signal.SIGTERM, signal.SIGINT)}

    def readiness() -> tuple[bool, str]:
        if elector is not None and not elector.leading:
            return False, elector.describe()
        ready = running.is_set() and controller_ready.is_set()
        return ready, elector.describe() if elector else "reconciling"

    health = HealthServer(health_url, readiness) if health_url else None
    context.metrics.leader.set(0)
    keep_stop = threading.Event()
    keeper: threading.Thread | None = None

    def stand_down() -> None:
        """Stop renewing, then release the Lease: a renewal landing after the release would take it back."""
        running.clear()
        context.metrics.leader.set(0)
        keep_stop.set()
        if keeper is not None:
            keeper.join()  # its one round is bounded by the request timeout (the retry period)
        if elector is not None:
            elector.release()

    try:
        if elector is not None and not elector.acquire(stop_requested):
            logger.info("leader election: stopped while waiting for the Lease")
            return 0
        context.metrics.leader.set(1)
        if elector is not None:
            keeper = threading.Thread(target=elector.keep, args=(keep_stop, _lost), name="autoglm-lease", daemon=True)
            keeper.start()
        running.set()
        # Released as soon as the controller has stopped writing, not when kopf's watches have wound down too.
        # Ready once kopf runs (and handles the signals itself); a signal before that is `stop_requested`.
        asyncio.run(controller())
    finally:
        stand_down()  # a no-op when already released (or never held)
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        if health is not None:
            health.stop()
    return 0


def _dump_stacks_on_usr1() -> None:
    """`kill -USR1 PID` prints every thread's stack to stderr: a stuck operator says where it is stuck."""
    try:
        faulthandler.register(signal.SIGUSR1, all_threads=True)
    except io.UnsupportedOperation:  # stderr is no file (the process runs embedded, e.g. under a test runner)
        logger.debug("no stack dumps on SIGUSR1: stderr is not a file")


def _lost(reason: str) -> None:
    """The Lease is lost: stop all work at once, as controller-runtime does, by ending the process."""
    logger.critical("leader election lost: %s; exiting", reason)
    logging.shutdown()
    os._exit(LOST_EXIT_STATUS)
