"""The spin pool of this folder's README (an experiment, not kept): workers wait for work by
spinning in nogil numba code on atomic flags, and after a timeout on a semaphore."""
import threading, time
import spin_atomics as atom
S = None
import numpy as np
from spin_atomics import delay, publish, finish_and_wait, wait_change, wait_equal, st, ex, ld
from tensornet.backends import threads as T

LINE = 8  # int64 per cache line
GO, SLEEP, DONE, MAIN_SLEEP = 0, 1, 2, 3

class SpinPool:
    def __init__(self, workers, spin_us=float(__import__("os").environ.get("SPIN_US", "300"))):
        self.workers = workers
        self.state = np.zeros((workers, LINE * 8), np.int64)  # per worker: its own lines
        self.jobs = [None] * workers
        self.errors = [None] * workers
        self.wake = [threading.Semaphore(0) for _ in range(workers)]
        self.back = [threading.Semaphore(0) for _ in range(workers)]
        self.lock = threading.Lock()
        self.seq = 0
        s = np.zeros(LINE * 8, np.int64)
        wait_change(s, 0, 0, 100)
        t = time.perf_counter(); wait_change(s, 0, 0, 20000); dt = time.perf_counter() - t
        self.spins = max(100, int(20000 * spin_us * 1e-6 / dt))
        delay(10); t = time.perf_counter(); delay(100000); dt = time.perf_counter() - t
        import os
        self.grace = int(100000 * float(os.environ.get("GRACE_US", "0")) * 1e-6 / dt)
        self.threads = [threading.Thread(target=self._loop, args=(w,), daemon=True,
                                         name=f"tensornet-cpu-{w}") for w in range(workers)]
        for t in self.threads: t.start()

    def _loop(self, w):
        T._region.inside = True
        row = self.state[w]
        seen = 0
        seq = wait_change(row, GO * LINE, seen, self.spins)
        while True:
            if seq == seen:
                st(row, SLEEP * LINE, 1)
                seq = ld(row, GO * LINE)
                if seq == seen:
                    self.wake[w].acquire()
                    seq = ld(row, GO * LINE)
                elif ex(row, SLEEP * LINE, 0) == 0:
                    self.wake[w].acquire()
            seen = seq
            function, chunk = self.jobs[w]
            self.jobs[w] = None
            if S is not None: atom.stamp_gil(S, 6)
            try:
                function(chunk)
            except BaseException as e:
                self.errors[w] = e
            woke, seq = finish_and_wait(row, DONE * LINE, MAIN_SLEEP * LINE, seen, GO * LINE,
                                        self.spins, S if S is not None else self.state[0], self.grace)
            if woke == 1:
                self.back[w].release()

    def run(self, function, chunks):
        if not self.lock.acquire(blocking=False):
            for c in chunks: function(c)
            return
        try:
            self.seq += 1
            seq = self.seq
            used = min(len(chunks) - 1, self.workers)
            # chunks beyond workers+1 run on the caller after its own
            for w in range(used):
                row = self.state[w]
                self.jobs[w] = (function, chunks[w + 1])
                if publish(row, GO * LINE, SLEEP * LINE, seq) == 1:
                    self.wake[w].release()
            T._region.inside = True
            try:
                function(chunks[0])
                for c in chunks[used + 1:]:
                    function(c)
            finally:
                if S is not None: atom.stamp_gil(S, 4)
                T._region.inside = False
                for w in range(used):
                    row = self.state[w]
                    if not wait_equal(row, DONE * LINE, seq, self.spins):
                        st(row, MAIN_SLEEP * LINE, 1)
                        if ld(row, DONE * LINE) != seq:
                            self.back[w].acquire()
                        elif ex(row, MAIN_SLEEP * LINE, 0) == 0:
                            self.back[w].acquire()
            if S is not None: atom.stamp_gil(S, 5)
            errors = [e for e in self.errors[:used] if e is not None]
            self.errors[:used] = [None] * used
            if errors:
                raise errors[0]
        finally:
            self.lock.release()

_pools = {}
def run_chunks(function, chunks, threads=None):
    workers = (T.num_threads() if threads is None else threads) - 1
    if workers < 1 or len(chunks) == 1:
        for c in chunks: function(c)
        return
    pool = _pools.get(workers)
    if pool is None:
        pool = _pools[workers] = SpinPool(workers)
    pool.run(function, chunks)

def install():
    import tensornet.backends.numpy as N
    import tensornet.backends.jit as J
    T.run_chunks = N.run_chunks = J.run_chunks = run_chunks
