"""Sandbox ports come from below the kernel's ephemeral range, where no outgoing connection can take them between
the choice and the server's bind (a Karmada start-up failed on "address already in use" that way)."""

from __future__ import annotations

import socket

import pytest
from pytest import MonkeyPatch

from autoglm.sandbox.build import SandboxError
from autoglm.sandbox.cluster import LOWEST_PORT, PORTS_ENV, _ephemeral_low, free_port, port_range


def test_ports_are_below_the_ephemeral_range_free_and_never_given_twice() -> None:
    ports = [free_port() for _ in range(200)]
    assert len(set(ports)) == len(ports)
    assert all(LOWEST_PORT <= p < min(_ephemeral_low(), 32768) for p in ports)
    with socket.socket() as s:
        s.bind(("127.0.0.1", ports[-1]))  # nothing listens there


def test_a_port_range_in_the_environment_keeps_separate_processes_sandboxes_apart(monkeypatch: MonkeyPatch) -> None:
    monkeypatch.setenv(PORTS_ENV, "24000-24100")
    ports = [free_port() for _ in range(50)]
    assert all(24000 <= p < 24100 for p in ports) and len(set(ports)) == 50
    for wrong in ("24000", "25000-24000", "80-90", "a-b"):
        monkeypatch.setenv(PORTS_ENV, wrong)
        with pytest.raises(SandboxError, match=PORTS_ENV):
            port_range()
