"""The local engine: results in order, outcomes as jobs finish, the first error wins and stops new jobs."""

from __future__ import annotations

import threading

import pytest

from conduit.chunking import decode_parts, encode_group, encode_position
from conduit.engines.base import PartJob, PartOutcome
from conduit.engines.local import LocalEngine


def job(n: int) -> PartJob:
    return PartJob("r", "load", (), n, n + 1)


def test_resources_come_back_in_the_order_given_whatever_order_they_finish_in() -> None:
    gate = threading.Event()

    def slow_first(x: int) -> int:
        if x == 0:
            assert gate.wait(10)
        else:
            gate.set()
        return x * 10

    assert LocalEngine(3).map_resources(slow_first, [0, 1, 2]) == [0, 10, 20]


def test_parts_run_at_most_parallelism_at_once_and_all_finish() -> None:
    running, peak, lock = 0, 0, threading.Lock()

    def runner(j: PartJob) -> PartOutcome:
        nonlocal running, peak
        with lock:
            running += 1
            peak = max(peak, running)
        threading.Event().wait(0.01)
        with lock:
            running -= 1
        return PartOutcome(j)

    got = sorted(o.job.chunk_base for o in LocalEngine(4).map_parts(runner, (job(n) for n in range(20)), 3))
    assert got == list(range(20))
    assert peak <= 3


def test_the_first_job_error_is_raised_and_no_job_starts_after_it() -> None:
    started: list[int] = []

    def runner(j: PartJob) -> PartOutcome:
        started.append(j.chunk_base)
        if j.chunk_base == 1:
            raise ValueError("part 1 is broken")
        return PartOutcome(j)

    with pytest.raises(ValueError, match="part 1 is broken"):
        list(LocalEngine(2).map_parts(runner, (job(n) for n in range(50)), 2))
    assert len(started) < 50


def test_ledger_fields_of_a_group_and_of_a_part() -> None:
    assert decode_parts(encode_group(["a.csv", "b.csv"], ["5", "int64"])) == (["a.csv", "b.csv"], ["5", "int64"], True)
    assert decode_parts(encode_position("a.csv", ["5", "int64"])) == (["a.csv"], ["5", "int64"], False)
