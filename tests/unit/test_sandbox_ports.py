"""Sandbox ports come from below the kernel's ephemeral range, where no outgoing connection can take them between
the choice and the server's bind (a Karmada start-up failed on "address already in use" that way)."""

from __future__ import annotations

import socket

from autoglm.sandbox.cluster import LOWEST_PORT, _ephemeral_low, free_port


def test_ports_are_below_the_ephemeral_range_free_and_never_given_twice() -> None:
    ports = [free_port() for _ in range(200)]
    assert len(set(ports)) == len(ports)
    assert all(LOWEST_PORT <= p < min(_ephemeral_low(), 32768) for p in ports)
    with socket.socket() as s:
        s.bind(("127.0.0.1", ports[-1]))  # nothing listens there
