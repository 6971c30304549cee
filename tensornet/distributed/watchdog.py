"""The collective watchdog: a daemon thread per rank (started by ``init()`` under
``mpiexec``) that ends every rank, with a line saying why, when this rank can no longer
leave the collective it waits in:

- it has waited longer than ``comm.timeout`` (a hung or far-behind rank);
- another rank left the program (``sys.exit``, the end of its script) ``EXIT_GRACE``
  seconds ago: each rank sends the others a one-byte notice at exit (``announce_exit``);
- another rank waits in a *different* collective (another kind, or another one in the
  order of calls): after ``DESYNC_AFTER`` seconds in one, the watchdog asks the others
  where they are, again every ``DESYNC_AFTER`` seconds, and ends at an answer that finds
  a rank still in the same other collective at least ``DESYNC_PEER_WAIT`` seconds after an
  earlier answer did; both calls are named (kind, number in call order, the code that
  made it). This is a deadlock MPI itself never reports: an all-gather on one rank and an
  all-reduce on the other wait for each other for ever.

Notices, questions and answers travel on a duplicate of the world communicator, so they
never mix with the program's own messages; they need MPI's THREAD_MULTIPLE (MPICH's and
mpi4py's default), without which only the timeout is watched.
"""
from __future__ import annotations

import os
import sys
import threading
import time

import numpy as np

# A collective whose ranks all took part ends within milliseconds; one still waited in this
# long after another rank left the program can never end. (A rank may leave a collective
# before the others return from it, so a notice alone does not mean a hang.)
EXIT_GRACE = 3.0
# Seconds in one collective before asking the other ranks where they are (and between two
# questions while still in it), and the least time an answering rank must have waited in
# a different collective for the two to count as a deadlock rather than a passing moment.
DESYNC_AFTER = 2.0
DESYNC_PEER_WAIT = 1.0
_EXIT_TAG, _ASK_TAG, _ANSWER_TAG = 7, 8, 9
_HERE = os.path.dirname(os.path.abspath(__file__))
_PACKAGE = os.path.dirname(_HERE)


def announce_exit(comm, pid: int) -> None:
    """At this rank's exit (atexit, before mpi4py's MPI_Finalize): a one-byte notice to
    every other rank, read by their watchdogs. (Not from a forked child of the rank.)"""
    mpi = comm._mpi
    if os.getpid() != pid or mpi.Is_finalized():  # a forked child, or the user finalized
        return
    payload = np.zeros(1, dtype=np.uint8)
    requests = [comm._notices.Isend(payload, dest=rank, tag=_EXIT_TAG)
                for rank in range(comm.size) if rank != comm.rank]
    mpi.Request.Waitall(requests)


def start(comm, abort_from_thread: bool) -> threading.Thread:
    """Start the watchdog of ``comm``: ``MPI_Abort`` where MPI allows calls from two
    threads, else this process exits (``mpiexec`` then ends the others, as for a rank that
    dies). It looks every tenth of the limit (between 0.05 and 5 s), every second where
    other ranks may ask it where it is, and every 0.2 s while in a collective."""
    thread = threading.Thread(target=_Watch(comm, abort_from_thread).run,
                              name="tensornet-collective-watchdog", daemon=True)
    thread.start()
    return thread


class _Watch:
    def __init__(self, comm, abort_from_thread: bool):
        self.comm, self.abort_from_thread = comm, abort_from_thread
        self.left = None   # (rank that left the program, when this rank learnt it)
        self.asked = None  # (number of the collective this rank asked about, when)
        # (rank, this rank's collective, that rank's, its kind) -> how long that rank had
        # waited there at the first answer that placed it there
        self.elsewhere = {}
        self.sending = []  # answers and questions in flight (mpi4py requests)

    def run(self) -> None:
        comm = self.comm
        while True:
            timeout, waiting = comm._timeout, comm._waiting
            period = 5.0 if timeout is None else min(5.0, max(0.05, timeout / 10.0))
            if comm._notices is not None:
                period = min(period, 0.2 if waiting is not None else 1.0)
            time.sleep(period)
            # The program called MPI.Finalize() itself: no MPI call is allowed from now on
            # (without notices this thread makes none: MPI is not threaded)
            if comm._notices is not None and comm._mpi.Is_finalized():
                return
            timeout, waiting, now = comm._timeout, comm._waiting, time.monotonic()
            if comm._notices is not None:
                self.sending = [r for r in self.sending if not r.Test()]
                self.answer_questions(waiting, now)
            if waiting is None:
                continue
            if comm._notices is not None:
                self.look_for_exits(waiting, now)
                self.look_for_other_collectives(waiting, now)
            if timeout is not None and now - waiting[1] > timeout:
                self.end(f"waited more than {timeout:g} s in {waiting[0]}: another rank is "
                         f"hung or far behind", " (init(timeout=...) sets the limit)")

    def end(self, message: str, hint: str = "") -> None:
        comm = self.comm
        sys.stderr.write(f"tensornet.distributed: rank {comm.rank} of {comm.size} {message}; "
                         f"ending every rank{hint}\n")
        sys.stderr.flush()
        time.sleep(0.2)  # let mpiexec forward the line before the abort kills it (comm.abort)
        if self.abort_from_thread:
            comm._comm.Abort(1)
        os._exit(1)

    def look_for_exits(self, waiting, now: float) -> None:
        comm = self.comm
        if self.left is None:
            status = comm._mpi.Status()
            if comm._notices.Iprobe(source=comm._mpi.ANY_SOURCE, tag=_EXIT_TAG, status=status):
                self.left = (status.Get_source(), now)
        if self.left is not None and now - max(self.left[1], waiting[1]) > EXIT_GRACE:
            self.end(f"waited in {waiting[0]} after rank {self.left[0]} left the program "
                     f"(sys.exit, or the end of its script) without joining it")

    # ------------------------------------------------------------ different collectives
    def answer_questions(self, waiting, now: float) -> None:
        """Tell each rank that asked where this one is: in which collective (number, kind,
        since how long, called from where), or outside any."""
        comm, status = self.comm, self.comm._mpi.Status()
        while comm._notices.Iprobe(source=comm._mpi.ANY_SOURCE, tag=_ASK_TAG, status=status):
            source = status.Get_source()
            asked = comm._notices.recv(source=source, tag=_ASK_TAG)
            # (numbers no longer comparable: as good as between collectives, never a deadlock)
            state = {"what": None} if waiting is None or not comm._numbered else {
                "what": waiting[0], "number": waiting[2], "waited": now - waiting[1],
                "where": _caller(waiting[3])}
            self.sending.append(comm._notices.isend({"asked": asked, **state}, dest=source,
                                                    tag=_ANSWER_TAG))

    def look_for_other_collectives(self, waiting, now: float) -> None:
        comm, number = self.comm, waiting[2]
        if comm._numbered and now - waiting[1] > DESYNC_AFTER and (
                self.asked is None or self.asked[0] != number
                or now - self.asked[1] > DESYNC_AFTER):
            self.asked = (number, now)
            self.sending += [comm._notices.isend(number, dest=rank, tag=_ASK_TAG)
                             for rank in range(comm.size) if rank != comm.rank]
        status = comm._mpi.Status()
        while comm._notices.Iprobe(source=comm._mpi.ANY_SOURCE, tag=_ANSWER_TAG,
                                   status=status):
            source = status.Get_source()
            answer = comm._notices.recv(source=source, tag=_ANSWER_TAG)
            if answer["asked"] != number or comm._waiting is not waiting:
                continue  # about a collective this rank has since left
            if answer["what"] is None or answer["waited"] < DESYNC_PEER_WAIT:
                continue  # busy between collectives, or just arrived: keep waiting
            if answer["number"] == number and answer["what"] == waiting[0]:
                continue  # the same collective: another rank is slower (the timeout's case)
            # A rank held up for a moment looks the same once: end at a later answer that
            # finds it still there, at least DESYNC_PEER_WAIT on (by its own clock: a rank
            # that was stopped answers the questions it missed all at once, alike).
            elsewhere = (source, number, answer["number"], answer["what"])
            first = self.elsewhere.setdefault(elsewhere, answer["waited"])
            if answer["waited"] - first >= DESYNC_PEER_WAIT:
                self.end(f"waits in {_describe(waiting[0], number, _caller(waiting[3]))}, "
                         f"while rank {source} waits in "
                         f"{_describe(answer['what'], answer['number'], answer['where'])}: "
                         f"the ranks called different collectives, so neither can finish "
                         f"(every rank must make the same collective calls in the same "
                         f"order: the same number of steps, the same evaluations)")


def _describe(what: str, number: int, where: str) -> str:
    return f"{what} (collective call {number}, {where})"


def _caller(thread_id: int) -> str:
    """Where the thread ``thread_id`` called the collective it waits in: the first
    function outside this package's communicator, and the user's line that led to it."""
    frame = sys._current_frames().get(thread_id)
    inner = outer = None
    while frame is not None:
        name = os.path.abspath(frame.f_code.co_filename)
        if inner is None and not name.startswith(_HERE + os.sep + "comm.py") \
                and "mpi4py" not in name:
            inner = frame
        if inner is not None and not name.startswith(_PACKAGE + os.sep):
            outer = frame
            break
        frame = frame.f_back
    if inner is None:
        return "called from an unknown place"
    text = f"in {inner.f_code.co_name} at {_short(inner)}"
    if outer is not None and outer is not inner:
        text += f", from {_short(outer)}"
    return text


def _short(frame) -> str:
    name = os.path.abspath(frame.f_code.co_filename)
    root = os.path.dirname(_PACKAGE)
    if name.startswith(root + os.sep):
        name = name[len(root) + 1:]
    return f"{name}:{frame.f_lineno}"
