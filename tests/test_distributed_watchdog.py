"""The collective watchdog's decisions (distributed/watchdog.py), driven in one process
through stand-ins for MPI's message calls; the runs under mpiexec are in
test_distributed_failures.py."""
from __future__ import annotations

import threading
import time

import pytest

from tensornet.distributed import watchdog


class _Status:
    source = None

    def Get_source(self):
        return self.source


class _Notices:
    """The watchdog's side channel: messages waiting for this rank, as (source, tag, obj)."""

    def __init__(self):
        self.inbox, self.sent = [], []

    def Iprobe(self, source, tag, status):
        for message in self.inbox:
            if message[1] == tag:
                status.source = message[0]
                return True
        return False

    def recv(self, source, tag):
        message = next(m for m in self.inbox if m[0] == source and m[1] == tag)
        self.inbox.remove(message)
        return message[2]

    def isend(self, obj, dest, tag):
        self.sent.append((dest, tag, obj))
        return self


class _MPI:
    ANY_SOURCE = -1
    Status = _Status


class _Comm:
    rank, size, _numbered, _mpi = 0, 2, True, _MPI

    def __init__(self):
        self._notices = _Notices()
        self._waiting = ("an all-reduce", time.monotonic() - 5.0, 3, threading.get_ident())


@pytest.fixture
def watch(monkeypatch):
    ended = []
    monkeypatch.setattr(watchdog._Watch, "end", lambda self, message, hint="":
                        ended.append(message))
    watch = watchdog._Watch(_Comm(), abort_from_thread=False)
    watch.ended = ended
    return watch


def _answer(watch, waited):
    """Rank 1 answers rank 0's question about collective 3: it waits in all-gather 2."""
    watch.comm._notices.inbox.append((1, watchdog._ANSWER_TAG, {
        "asked": 3, "what": "an all-gather", "number": 2, "waited": waited,
        "where": "in f at x.py:1"}))


def test_answers_given_at_one_moment_are_one_look_not_two(watch):
    """A rank that was stopped (SIGSTOP, a swapped-out or throttled process) for a few
    seconds just as it was leaving a collective answers the questions it missed all at
    once, each saying where it was then: that is one sighting, not a rank seen twice in
    another collective, so no rank is ended. A later answer that finds it still there a
    second on does end."""
    comm = watch.comm
    _answer(watch, 5.2)
    _answer(watch, 5.2)
    watch.look_for_other_collectives(comm._waiting, time.monotonic())
    assert watch.ended == []
    _answer(watch, 5.7)  # half a second on: still a passing moment
    watch.look_for_other_collectives(comm._waiting, time.monotonic())
    assert watch.ended == []
    _answer(watch, 7.2)
    watch.look_for_other_collectives(comm._waiting, time.monotonic())
    assert len(watch.ended) == 1
    assert "while rank 1 waits in an all-gather (collective call 2" in watch.ended[0]


def test_numbers_that_no_longer_compare_end_nothing(watch):
    """After a collective raised on this rank (caught, and the program went on) its count
    of calls may be one off: it neither asks the others where they are nor tells them."""
    comm = watch.comm
    comm._numbered = False
    comm._notices.inbox.append((1, watchdog._ASK_TAG, 2))
    watch.answer_questions(comm._waiting, time.monotonic())
    watch.look_for_other_collectives(comm._waiting, time.monotonic())
    assert [(dest, tag, obj) for dest, tag, obj in comm._notices.sent] == [
        (1, watchdog._ANSWER_TAG, {"asked": 2, "what": None})]
