"""The work queue every reconcile goes through: de-duplication, one worker per key, delays and backoff."""

from __future__ import annotations

import random
import threading
import time

from autoglm.shell.workqueue import LOW, TokenBucket, WorkQueue


def test_a_key_added_twice_before_it_is_taken_runs_once() -> None:
    queue: WorkQueue[str] = WorkQueue()
    for key in ("a", "b", "a", "a"):
        queue.add(key)
    assert [queue.get(0), queue.get(0), queue.get(0)] == ["a", "b", None]


def test_a_key_is_never_handed_to_two_workers_and_comes_back_once_when_added_meanwhile() -> None:
    queue: WorkQueue[str] = WorkQueue()
    queue.add("a")
    assert queue.get(0) == "a"
    queue.add("a")
    queue.add("a")
    queue.add("b")
    # "a" is being processed: the second worker gets "b", not "a".
    assert queue.get(0) == "b"
    assert queue.get(0) is None
    queue.done("a")
    assert queue.get(0) == "a"
    queue.done("a")
    queue.done("b")
    assert queue.get(0) is None


def test_unrelated_keys_do_not_wait_for_a_slow_one() -> None:
    queue: WorkQueue[str] = WorkQueue()
    finished: list[str] = []
    slow_started = threading.Event()

    def worker() -> None:
        while (key := queue.get(2)) is not None:
            if key == "slow":
                slow_started.set()
                time.sleep(0.5)
            finished.append(key)
            queue.done(key)

    threads = [threading.Thread(target=worker) for _ in range(2)]
    for t in threads:
        t.start()
    queue.add("slow")
    slow_started.wait(2)
    for i in range(5):
        queue.add(f"fast-{i}")
    time.sleep(0.2)
    assert finished == [f"fast-{i}" for i in range(5)], "the fast keys ran while the slow one held a worker"
    queue.shut_down()
    for t in threads:
        t.join(3)
    assert "slow" in finished


def test_add_after_holds_a_key_back_and_the_earliest_delay_wins() -> None:
    queue: WorkQueue[str] = WorkQueue()
    queue.add_after("late", 0.3)
    queue.add_after("late", 0.05)
    queue.add_after("later", 0.2)
    assert queue.get(0) is None and queue.waiting() == 2
    started = time.monotonic()
    assert queue.get(1) == "late"
    assert 0.04 <= time.monotonic() - started < 0.2
    assert queue.get(1) == "later"
    assert queue.get(0.3) is None, "the superseded 0.3 s delay of 'late' adds nothing"


def test_retries_back_off_exponentially_with_bounded_jitter_until_forgotten() -> None:
    queue: WorkQueue[str] = WorkQueue(base_delay=1.0, max_delay=10.0, jitter=0.2, rng=random.Random(7))
    delays = [queue.add_rate_limited("a") for _ in range(6)]
    for failures, delay in enumerate(delays):
        bound = min(10.0, 2.0**failures)
        assert bound <= delay <= min(10.0, bound * 1.2), (failures, delay)
    assert queue.failures("a") == 6
    queue.forget("a")
    assert queue.failures("a") == 0
    assert 1.0 <= queue.add_rate_limited("a") <= 1.2


def test_jitter_spreads_keys_that_fail_together() -> None:
    queue: WorkQueue[int] = WorkQueue(base_delay=1.0, jitter=0.2, rng=random.Random(1))
    delays = {round(queue.add_rate_limited(k), 6) for k in range(50)}
    assert len(delays) == 50


def test_the_bucket_bounds_retries_of_all_keys_together() -> None:
    now = [0.0]
    bucket = TokenBucket(qps=10.0, burst=3, clock=lambda: now[0])
    assert [bucket.reserve() for _ in range(3)] == [0.0, 0.0, 0.0]
    assert abs(bucket.reserve() - 0.1) < 1e-9
    assert abs(bucket.reserve() - 0.2) < 1e-9
    now[0] = 10.0  # refilled, never past the burst
    assert [bucket.reserve() for _ in range(3)] == [0.0, 0.0, 0.0]
    assert bucket.reserve() > 0


def test_shut_down_wakes_every_waiting_worker_and_drops_what_was_queued() -> None:
    queue: WorkQueue[str] = WorkQueue()
    got: list[str | None] = []
    threads = [threading.Thread(target=lambda: got.append(queue.get())) for _ in range(3)]
    for t in threads:
        t.start()
    time.sleep(0.05)
    queue.shut_down()
    for t in threads:
        t.join(2)
    assert got == [None, None, None]
    queue.add("a")
    assert queue.get(0) is None


def test_drop_cancels_a_delayed_add() -> None:
    queue: WorkQueue[str] = WorkQueue(base_delay=0.05, jitter=0.0)
    queue.add_rate_limited("gone")
    queue.drop("gone")
    assert queue.get(0.2) is None and queue.failures("gone") == 0


def test_a_change_goes_before_a_resync_pass_and_a_low_key_asked_for_again_moves_up() -> None:
    queue: WorkQueue[str] = WorkQueue()
    for key in ("r1", "r2", "r3"):
        queue.add(key, LOW)  # a resync pass over everything
    queue.add("new")  # a create meanwhile
    queue.add("r3")  # an event of an object the pass had queued too
    queue.add("r1", LOW)  # asked for again by the next pass: stays where it is
    assert [queue.get(0) for _ in range(5)] == ["new", "r3", "r1", "r2", None]


def test_a_low_key_added_while_it_runs_comes_back_at_its_priority() -> None:
    queue: WorkQueue[str] = WorkQueue()
    queue.add("a", LOW)
    assert queue.get(0) == "a"
    queue.add("a", LOW)
    queue.add("b", LOW)
    queue.add("c")
    queue.done("a")
    assert [queue.get(0), queue.get(0), queue.get(0)] == ["c", "b", "a"]
    assert queue.depth() == 0


def test_queue_wait_is_measured_from_the_first_ask_to_the_hand_out() -> None:
    now = [0.0]
    queue: WorkQueue[str] = WorkQueue(clock=lambda: now[0])
    waits: list[float] = []
    queue.on_wait = waits.append
    queue.add("a")
    now[0] = 2.0
    queue.add("a")  # asked for again while it waits: still measured from the first ask
    queue.add("b")
    now[0] = 5.0
    assert queue.get(0) == "a"
    queue.add("a")  # asked for while a worker holds it: waits from now until handed out again
    now[0] = 6.0
    assert queue.get(0) == "b"
    queue.done("a")
    now[0] = 7.5
    assert queue.get(0) == "a"
    assert waits == [5.0, 4.0, 2.5]


def test_busy_since_names_the_keys_held_or_handed_back_since_then_and_forgets_old_ones() -> None:
    clock = [100.0]
    queue: WorkQueue[str] = WorkQueue(clock=lambda: clock[0], remember_done=60.0)
    for key in ("before", "held", "finished"):
        queue.add(key)
    assert queue.get(0) == "before"
    queue.done("before")
    clock[0] = 110.0
    since = queue.now()
    assert queue.get(0) == "held"
    assert queue.get(0) == "finished"
    clock[0] = 111.0
    queue.done("finished")
    assert queue.busy_since(since) == {"held", "finished"}
    clock[0] = 200.0
    queue.done("held")
    # "finished" was handed back 89 s ago, beyond the 60 s remembered: only "held" is still known.
    assert queue.busy_since(since) == {"held"}
    assert queue.busy_since(queue.now() + 1) == set()
