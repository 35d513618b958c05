"""Leader election on a coordination.k8s.io/v1 Lease, with client-go's semantics (as controller-runtime uses it).

A candidate takes the Lease when nobody holds it or when its holder has not renewed it for the lease duration,
as *this* candidate measured it: expiry is judged by the local monotonic clock from when the candidate last saw
the record change, never by comparing its clock with the holder's timestamps, so skewed clocks cannot make two
leaders. The leader renews every retry period; one that has not renewed within the renew deadline, or finds
another holder, has lost, and the process must stop all work at once (controller-runtime exits). A clean stop
releases the Lease (holder cleared, a one-second duration), so a standby takes over at its next retry instead
of waiting out the lease duration.

The client library's own leaderelection module has no release and judges expiry by wall-clock time, hence this.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime

from kubernetes import client
from kubernetes.client import ApiException

from autoglm.shell.problems import UNREACHABLE, short_reason

logger = logging.getLogger(__name__)


def default_identity() -> str:
    """The pod's name where the chart gives it (POD_NAME), else host and process id."""
    return os.environ.get("POD_NAME") or f"{socket.gethostname()}_{os.getpid()}"


@dataclass(frozen=True)
class LeaseSettings:
    namespace: str
    name: str = "open-autoglm"
    identity: str = ""
    lease_seconds: float = 15.0
    renew_deadline_seconds: float = 10.0
    retry_seconds: float = 2.0

    def __post_init__(self) -> None:
        if not self.lease_seconds > self.renew_deadline_seconds > self.retry_seconds > 0:
            raise ValueError(
                "leader election needs lease duration > renew deadline > retry period > 0, got "
                f"{self.lease_seconds:g} s, {self.renew_deadline_seconds:g} s, {self.retry_seconds:g} s"
            )


@dataclass(frozen=True)
class LeaseRecord:
    """What a Lease's spec says, as far as election goes."""

    holder: str
    lease_seconds: float
    acquired: datetime | None
    renewed: datetime | None
    transitions: int

    @classmethod
    def of(cls, lease: client.V1Lease) -> LeaseRecord:
        spec = lease.spec or client.V1LeaseSpec()
        return cls(
            spec.holder_identity or "",
            float(spec.lease_duration_seconds or 0),
            spec.acquire_time,
            spec.renew_time,
            int(spec.lease_transitions or 0),
        )


class LeaderElector:
    def __init__(
        self,
        api: client.ApiClient,
        settings: LeaseSettings,
        monotonic: Callable[[], float] = time.monotonic,
        now: Callable[[], datetime] = lambda: datetime.now(UTC),
    ):
        self.settings = settings
        self.identity = settings.identity or default_identity()
        self.leases = client.CoordinationV1Api(api)
        self._monotonic, self._now = monotonic, now
        self._observed: LeaseRecord | None = None
        self._observed_at = 0.0  # monotonic time the observed record last changed
        self._renewed_at: float | None = None  # monotonic time of this candidate's last successful renew
        self._lock = threading.Lock()

    # --- what a person or a probe asks ---------------------------------------------------------------------

    @property
    def leading(self) -> bool:
        with self._lock:
            return self._renewed_at is not None

    @property
    def holder(self) -> str:
        """The holder as last seen ('' when none or not read yet)."""
        with self._lock:
            return self._observed.holder if self._observed else ""

    def describe(self) -> str:
        where = f"Lease {self.settings.namespace}/{self.settings.name}"
        if self.leading:
            return f"{self.identity} leads ({where})"
        holder = self.holder
        return f"{self.identity} is a standby: {where} is held by {holder}" if holder else f"{where} is not held yet"

    # --- one attempt -------------------------------------------------------------------------------------

    def try_acquire_or_renew(self) -> bool:
        """One attempt to take or keep the Lease; True when this candidate holds it now."""
        s = self.settings
        timeout = s.retry_seconds
        try:
            lease = self.leases.read_namespaced_lease(s.name, s.namespace, _request_timeout=timeout)
        except ApiException as exc:
            if exc.status != 404:
                raise
            return self._create()
        record = LeaseRecord.of(lease)
        mono = self._monotonic()
        with self._lock:
            if record != self._observed:
                self._observed, self._observed_at = record, mono
            observed_at = self._observed_at
        mine = record.holder == self.identity
        if record.holder and not mine and observed_at + record.lease_seconds > mono:
            return False
        now = self._now()
        spec = lease.spec = lease.spec or client.V1LeaseSpec()
        spec.holder_identity = self.identity
        spec.lease_duration_seconds = round(s.lease_seconds)
        spec.renew_time = now
        if not mine:
            spec.acquire_time = now
            spec.lease_transitions = record.transitions + (1 if record.holder else 0)
        try:
            updated = self.leases.replace_namespaced_lease(s.name, s.namespace, lease, _request_timeout=timeout)
        except ApiException as exc:
            if exc.status == 409:  # someone else wrote it first: not ours this round
                return False
            raise
        self._held(LeaseRecord.of(updated))
        return True

    def _create(self) -> bool:
        s = self.settings
        now = self._now()
        body = client.V1Lease(
            metadata=client.V1ObjectMeta(name=s.name, namespace=s.namespace),
            spec=client.V1LeaseSpec(
                holder_identity=self.identity,
                lease_duration_seconds=round(s.lease_seconds),
                acquire_time=now,
                renew_time=now,
                lease_transitions=0,
            ),
        )
        try:
            created = self.leases.create_namespaced_lease(s.namespace, body, _request_timeout=s.retry_seconds)
        except ApiException as exc:
            if exc.status == 409:
                return False
            raise
        self._held(LeaseRecord.of(created))
        return True

    def _held(self, record: LeaseRecord) -> None:
        mono = self._monotonic()
        with self._lock:
            self._observed, self._observed_at, self._renewed_at = record, mono, mono

    def _attempt(self) -> bool:
        """One attempt whose failure to reach the API server is a lost round, not a crash."""
        try:
            return self.try_acquire_or_renew()
        except UNREACHABLE as exc:  # a failed round; the renew deadline decides what it means
            logger.warning("leader election: %s", short_reason(exc))
            return False

    # --- the loops ---------------------------------------------------------------------------------------

    def acquire(self, stop: threading.Event) -> bool:
        """Block until this candidate holds the Lease (True) or `stop` is set (False)."""
        logger.info("leader election: %s is a candidate for Lease %s/%s", self.identity, *self._where())
        reported = ""
        while not stop.is_set():
            if self._attempt():
                logger.info("leader election: %s acquired the Lease", self.identity)
                return True
            holder = self.holder
            if holder != reported:
                logger.info("leader election: the Lease is held by %s; waiting", holder or "nobody")
                reported = holder
            stop.wait(self.settings.retry_seconds)
        return False

    def keep(self, stop: threading.Event, on_lost: Callable[[str], None]) -> None:
        """Renew every retry period until `stop` is set; call `on_lost` once when the Lease is lost (not renewed
        within the renew deadline, or taken by another candidate)."""
        try:
            self._keep(stop, on_lost)
        except Exception:  # a bug in renewing must not leave a leader that no longer renews: it has lost
            logger.exception("leader election: renewing failed")
            self._lost()
            on_lost("renewing the Lease failed")

    def _keep(self, stop: threading.Event, on_lost: Callable[[str], None]) -> None:
        s = self.settings
        while not stop.wait(s.retry_seconds):
            if self._attempt():
                continue
            with self._lock:
                renewed_at = self._renewed_at
                holder = self._observed.holder if self._observed else ""
            if holder and holder != self.identity:
                self._lost()
                on_lost(f"the Lease was taken by {holder}")
                return
            if renewed_at is None or self._monotonic() - renewed_at > s.renew_deadline_seconds:
                self._lost()
                on_lost(f"the Lease was not renewed within the {s.renew_deadline_seconds:g} s renew deadline")
                return

    def _lost(self) -> None:
        with self._lock:
            self._renewed_at = None

    def release(self) -> bool:
        """Give the Lease up on a clean stop (only if still ours); True when released."""
        s = self.settings
        if not self.leading:
            return False
        self._lost()
        try:
            lease = self.leases.read_namespaced_lease(s.name, s.namespace, _request_timeout=s.retry_seconds)
            spec = lease.spec
            if spec is None or (spec.holder_identity or "") != self.identity:
                return False
            spec.holder_identity = None
            spec.lease_duration_seconds = 1
            spec.renew_time = self._now()
            self.leases.replace_namespaced_lease(s.name, s.namespace, lease, _request_timeout=s.retry_seconds)
        except UNREACHABLE as exc:  # the standby waits out the lease duration instead
            logger.warning("leader election: the Lease was not released: %s", short_reason(exc))
            return False
        logger.info("leader election: %s released the Lease", self.identity)
        return True

    def _where(self) -> tuple[str, str]:
        return self.settings.namespace, self.settings.name
