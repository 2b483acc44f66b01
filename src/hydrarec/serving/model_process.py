"""``ModelProcess``: the ``/recommend`` model in a process of its own, off the server's GIL;
``ModelPool``: several of them, for as many batches at once.

In one process, the event loop (HTTP parsing, validation, JSON) and the model thread take turns
on one GIL. The model releases it inside each torch kernel and must take it back after each of
its ~100 kernels per call; while the event loop holds it, every take-back waits for the
interpreter's switch interval (5 ms). Measured on the ML-100K MMoE run, 8 users per call, one
torch thread: 8 ms with an idle main thread, 31-258 ms with a main thread running Python
(``benchmarks/bench_serving.py`` tells the story under load). In a process of its own the model
has a GIL to itself, and the two halves of the service use both cores.

The child loads the run itself (spawned, not forked: torch's threads do not survive a fork) and
answers ``recommend_for`` calls over a pipe: queries and options in, ``Recommendations`` (a few
small arrays) out, errors sent back and raised again in the server as themselves (an unknown id
stays an ``UnknownIdError``, so it is still a 404). If the child dies, the call that saw it fails
with a ``RuntimeError`` naming its exit code, and the next call starts a new child.
"""

from __future__ import annotations

import contextlib
import gc
import multiprocessing as mp
import pickle
import queue
import signal
import threading
from collections.abc import Sequence
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

from hydrarec.recommender import Recommendations, Recommender, UserQuery


class ModelProcess:
    """``recommend_for`` of the run at ``run``, computed in a child process (one call at a time)."""

    def __init__(self, run: str | Path, index: str | None = None, start_timeout: float = 300.0):
        self.run = Path(run)
        self.index = index
        self.start_timeout = start_timeout
        self._lock = threading.Lock()
        self._conn: Connection | None = None
        self._proc: mp.process.BaseProcess | None = None
        self._start()

    def _start(self) -> None:
        ctx = mp.get_context("spawn")
        parent, child = ctx.Pipe()
        proc = ctx.Process(
            target=_child, args=(child, str(self.run), self.index), name="hydrarec-model"
        )
        proc.start()
        child.close()
        if not parent.poll(self.start_timeout):
            proc.kill()
            raise RuntimeError(
                f"the model process did not load {self.run} in {self.start_timeout} s"
            )
        try:
            status, payload = parent.recv()
        except EOFError:
            proc.join(5)
            raise RuntimeError(
                f"the model process exited while loading {self.run} (exit code {proc.exitcode})"
            ) from None
        if status == "error":
            proc.join(5)
            raise payload
        self._conn, self._proc = parent, proc

    @property
    def pid(self) -> int | None:
        return None if self._proc is None else self._proc.pid

    def recommend_for(
        self, queries: Sequence[UserQuery], k: int = 10, **options: Any
    ) -> Recommendations:
        """``Recommender.recommend_for(queries, k, **options)``, in the child."""
        with self._lock:
            if self._proc is None or not self._proc.is_alive():
                self._start()  # the last one died: its call has failed already, this one need not
            assert self._conn is not None and self._proc is not None
            try:
                self._conn.send((list(queries), k, options))
                status, payload = self._conn.recv()
            except (EOFError, OSError, BrokenPipeError):
                self._proc.join(5)
                code = self._proc.exitcode
                self._proc = None
                raise RuntimeError(f"the model process exited (exit code {code})") from None
        if status == "error":
            raise payload
        return payload  # type: ignore[no-any-return]

    def close(self) -> None:
        with self._lock:
            if self._proc is None:
                return
            assert self._conn is not None
            with contextlib.suppress(OSError):  # the child is gone already
                self._conn.send(None)
            self._proc.join(10)
            if self._proc.is_alive():
                self._proc.kill()
                self._proc.join(5)
            self._conn.close()
            self._proc = None


class ModelPool:
    """``n`` ``ModelProcess``es of one run; each ``recommend_for`` call takes an idle one (calls
    from ``n`` threads run at once, on as many cores as the machine gives them)."""

    def __init__(self, run: str | Path, index: str | None = None, processes: int = 1) -> None:
        if processes < 1:
            raise ValueError(f"model processes must be >= 1, got {processes}")
        self._all: list[ModelProcess] = []
        try:
            for _ in range(processes):
                self._all.append(ModelProcess(run, index))
        except BaseException:
            self.close()
            raise
        self._idle: queue.SimpleQueue[ModelProcess] = queue.SimpleQueue()
        for proc in self._all:
            self._idle.put(proc)

    def __len__(self) -> int:
        return len(self._all)

    @property
    def pids(self) -> list[int | None]:
        return [proc.pid for proc in self._all]

    def recommend_for(
        self, queries: Sequence[UserQuery], k: int = 10, **options: Any
    ) -> Recommendations:
        proc = self._idle.get()
        try:
            return proc.recommend_for(queries, k, **options)
        finally:
            self._idle.put(proc)

    def close(self) -> None:
        for proc in self._all:
            proc.close()


def _child(conn: Connection, run: str, index: str | None) -> None:
    # the server's Ctrl-C reaches the whole process group; the server closes this process itself
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        rec = Recommender.load(run, index=index)
    except Exception as e:
        conn.send(("error", _portable(e)))
        return
    settle_heap()
    conn.send(("ready", None))
    while True:
        try:
            message = conn.recv()
        except EOFError:  # the server is gone
            return
        if message is None:
            return
        queries, k, options = message
        try:
            out = rec.recommend_for(queries, k, **options)
        except Exception as e:
            conn.send(("error", _portable(e)))
        else:
            conn.send(("ok", out))


def settle_heap() -> None:
    """Move everything allocated so far (torch, pandas, the model: ~240,000 objects) out of the
    garbage collector's reach: a full collection walks them all (94 ms on the ML-100K run), a
    stall in the latency of every request in flight. Per-request garbage is collected as usual.
    """
    gc.collect()
    gc.freeze()


def _portable(e: Exception) -> Exception:
    """``e`` if it survives pickling as itself, else a ``RuntimeError`` with its type and text."""
    try:
        back = pickle.loads(pickle.dumps(e))
    except Exception:
        back = None
    if type(back) is type(e) and str(back) == str(e):
        return e
    return RuntimeError(f"{type(e).__name__}: {e}")
