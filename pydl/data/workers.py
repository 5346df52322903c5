"""Worker pools for ``DataLoader``: processes (the default) or threads that make batches.

The main process hands out tasks ``(epoch, batch number, indices, seed)`` on one queue;
any free worker takes the next one, makes the batch (fetch, collate, augment: the loader's
``make`` function) and puts ``(epoch, batch number, batch, failure)`` on the result queue.
The loader puts results back in batch order, so which worker made which batch never shows.

Processes are started with ``fork`` where the platform has it (the dataset and functions are
inherited, nothing is pickled on the way in; batches are pickled on the way back), else
``spawn`` (then the dataset, ``collate_fn`` and ``transform`` must pickle). A worker that
raises sends its traceback text, re-raised in the main process; a worker that dies (killed,
out of memory) is noticed within a second and reported with its exit code.
"""

from __future__ import annotations

import multiprocessing
import os
import pickle
import queue
import signal
import threading
import time
import traceback

__all__ = ["WorkerPool", "WorkerError"]

POLL_SECONDS = 1.0  # how often a waiting loader checks that its workers are still alive
JOIN_SECONDS = 5.0  # how long shutdown waits for a worker before terminating it


class WorkerError(RuntimeError):
    """A worker failed to make a batch; the message carries the worker's traceback."""


class _Failure:
    """What a worker sends back instead of a batch: the exception type and traceback text."""

    def __init__(self, worker_id, exc):
        self.worker_id = worker_id
        self.exc_type = type(exc)
        try:  # a class defined inside a function can't travel between processes
            pickle.dumps(self.exc_type)
        except Exception:  # noqa: BLE001 - any pickling failure
            self.exc_type = WorkerError
        self.text = "".join(traceback.format_exception(type(exc), exc, exc.__traceback__))

    def exception(self, batch_no):
        message = (f"DataLoader worker {self.worker_id} failed on batch {batch_no}; "
                   f"its traceback:\n{self.text}")
        if issubclass(self.exc_type, KeyError):  # str(KeyError) would quote the traceback
            return WorkerError(message)
        try:
            err = self.exc_type(message)  # the worker's exception type, where that works
            if isinstance(err, Exception):
                return err
        except Exception:  # noqa: BLE001 - types that need other arguments
            pass
        return WorkerError(message)


def _loop(worker_id, make, tasks, results, parent_pid=None, pack=None):
    """Make batches until told to stop. ``pack`` (processes): pickle each result here, so a
    batch that can't be pickled fails like any other error instead of being lost in the
    queue's feeder thread."""
    while True:
        try:
            task = tasks.get(timeout=POLL_SECONDS)
        except queue.Empty:
            if parent_pid is not None and os.getppid() != parent_pid:
                return  # the main process died without stopping us: don't linger
            continue
        if task is None:
            return
        epoch, batch_no, indices, seed = task
        try:
            result = (epoch, batch_no, make(indices, seed), None)
            results.put(pack(result) if pack else result)
        except Exception as exc:  # noqa: BLE001 - sent to the main process, raised there
            failure = (epoch, batch_no, None, _Failure(worker_id, exc))
            results.put(pack(failure) if pack else failure)


def _pack(item):
    return pickle.dumps(item, protocol=pickle.HIGHEST_PROTOCOL)


def _process_main(worker_id, make, tasks, results, parent_pid):
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the main process's to handle
    try:  # one BLAS thread per worker: the workers are the parallelism
        from threadpoolctl import threadpool_limits

        threadpool_limits(1)
    except ImportError:
        pass
    try:
        _loop(worker_id, make, tasks, results, parent_pid, _pack)
    except KeyboardInterrupt:
        pass


class WorkerPool:
    """``num_workers`` processes or threads running ``make(indices, seed)`` on tasks.

    ``make_for_worker()`` returns a worker's ``make``; each thread calls it for its own (so
    reseeding one worker's transform never disturbs another's), processes share one call.
    """

    def __init__(self, num_workers: int, make_for_worker, kind: str = "process"):
        if kind not in ("process", "thread"):
            raise ValueError(f"worker_type must be 'process' or 'thread', got {kind!r}")
        self.kind = kind
        self.epoch = 0
        self.workers = []
        if kind == "process":
            method = "fork" if "fork" in multiprocessing.get_all_start_methods() else "spawn"
            ctx = multiprocessing.get_context(method)
            self.tasks, self.results = ctx.Queue(), ctx.Queue()
            make = make_for_worker()
            for i in range(num_workers):
                w = ctx.Process(target=_process_main,
                                args=(i, make, self.tasks, self.results, os.getpid()),
                                name=f"pydl-loader-{i}", daemon=True)
                w.start()
                self.workers.append(w)
        else:
            self.tasks, self.results = queue.Queue(), queue.Queue()
            for i in range(num_workers):
                w = threading.Thread(target=_loop, name=f"pydl-loader-{i}", daemon=True,
                                     args=(i, make_for_worker(), self.tasks, self.results))
                w.start()
                self.workers.append(w)

    def submit(self, batch_no, indices, seed):
        self.tasks.put((self.epoch, batch_no, indices, seed))

    def get(self, timeout=None):
        """The next result of the current epoch: (batch number, batch, failure or None).

        Results of an earlier, abandoned epoch are dropped. Raises ``WorkerError`` when a
        worker process has died, ``TimeoutError`` after ``timeout`` seconds without one.
        """
        waited = 0.0
        while True:
            try:
                item = self.results.get(timeout=POLL_SECONDS)
            except queue.Empty:
                self._check_alive()
                waited += POLL_SECONDS
                if timeout and waited >= timeout:
                    raise TimeoutError(
                        f"DataLoader: no batch from the workers in {timeout:g} s"
                    ) from None
                continue
            epoch, batch_no, batch, failure = (
                pickle.loads(item) if self.kind == "process" else item)
            if epoch == self.epoch:
                return batch_no, batch, failure

    def _check_alive(self):
        for i, w in enumerate(self.workers):
            if self.kind == "process" and not w.is_alive():
                raise WorkerError(
                    f"DataLoader worker {i} (pid {w.pid}) exited unexpectedly with exit code "
                    f"{w.exitcode}" + (" (killed by a signal)" if (w.exitcode or 0) < 0 else "")
                )

    def new_epoch(self):
        """Forget the tasks of the epoch in flight (their results will be dropped)."""
        self.epoch += 1
        try:
            while True:
                self.tasks.get_nowait()
        except (queue.Empty, OSError):
            pass

    def alive(self) -> bool:
        return any(w.is_alive() for w in self.workers)

    def close(self):
        """Stop every worker: a stop message each, then join; terminate what still runs."""
        if not self.workers:
            return
        self.new_epoch()
        for _ in self.workers:
            self.tasks.put(None)
        deadline = time.monotonic() + JOIN_SECONDS
        while self.alive() and time.monotonic() < deadline:
            try:  # a process can't exit while its last results sit unread in the pipe
                self.results.get(timeout=0.02)
            except queue.Empty:
                pass
        if self.kind == "process":
            for w in self.workers:
                if w.is_alive():
                    w.terminate()
                    w.join(JOIN_SECONDS)
            for q in (self.tasks, self.results):
                q.cancel_join_thread()
                q.close()
        self.workers = []

    @property
    def pids(self):
        return [w.pid for w in self.workers] if self.kind == "process" else [os.getpid()]
