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
    running = threading.Event()

    def readiness() -> tuple[bool, str]:
        if elector is not None and not elector.leading:
            return False, elector.describe()
        return running.is_set(), elector.describe() if elector else "reconciling"

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
        if elector is not None and not _wait_for_lease(elector):
            return 0
        context.metrics.leader.set(1)
        if elector is not None:
            keeper = threading.Thread(target=elector.keep, args=(keep_stop, _lost), name="autoglm-lease", daemon=True)
            keeper.start()
        running.set()
        # Released as soon as the controller has stopped writing, not when kopf's watches have wound down too.
        asyncio.run(run_kopf(context, namespaces, on_stopped=stand_down))
    finally:
        stand_down()  # a no-op when already released (or never held)
        if health is not None:
            health.stop()
    return 0


def _dump_stacks_on_usr1() -> None:
    """`kill -USR1 PID` prints every thread's stack to stderr: a stuck operator says where it is stuck."""
    try:
        faulthandler.register(signal.SIGUSR1, all_threads=True)
    except io.UnsupportedOperation:  # stderr is no file (the process runs embedded, e.g. under a test runner)
        logger.debug("no stack dumps on SIGUSR1: stderr is not a file")


def _wait_for_lease(elector: LeaderElector) -> bool:
    """Block until this process holds the Lease; False when a signal asked it to stop first."""
    stop = threading.Event()

    def stop_waiting(signum: int, _: FrameType | None) -> None:
        logger.info("leader election: stopped by signal %d while waiting for the Lease", signum)
        stop.set()

    previous = {sig: signal.signal(sig, stop_waiting) for sig in (signal.SIGTERM, signal.SIGINT)}
    try:
        return elector.acquire(stop)
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def _lost(reason: str) -> None:
    """The Lease is lost: stop all work at once, as controller-runtime does, by ending the process."""
    logger.critical("leader election lost: %s; exiting", reason)
    logging.shutdown()
    os._exit(LOST_EXIT_STATUS)
