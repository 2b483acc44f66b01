"""``ModelProcess``: the ``/recommend`` model in a process of its own, off the server's GIL;
``ModelPool``: several of them, for as many batches at once.

In one process, the event loop (HTTP parsing, validation, JSON) and the model thread take turns
on one GIL. The model releases it inside each torch kernel and must take it back after each of
its hundreds of kernels per call; while the event loop holds it, a take-back can wait for the
interpreter's switch interval, so a call takes several times longer beside a busy loop. In
processes of their own the model has a GIL to itself, and with several of them several batches
are scored at once on as many cores (``benchmarks/RESULTS.md``, *Serving*).

The child loads the run itself (spawned, not forked: torch's threads do not survive a fork) and
answers ``recommend`` calls over a pipe: queries and options in, ``Recommendations`` (a few
small arrays) out, errors sent back and raised again in the server as themselves (an unknown id
stays an ``UnknownIdError``, so it is still a 404). A child that dies or hangs during a call fails
that call with a ``RuntimeError``; one found dead before a call is replaced first.

The service calls ``recommend_async`` from its event loop: the request goes down the pipe and the
loop reads the answer as it arrives, with no thread in between: through a thread pool
(``recommend`` in an executor) each call cost the server two thread hand-offs, each a wake-up
and a take-back of the GIL from the loop, and served fewer requests/s (``benchmarks/RESULTS.md``).

The loop reads the answer piece by piece off a non-blocking socket (``_recv_message``), never
with ``Connection.recv``: uvloop leaves a descriptor it has watched non-blocking, so a blocking
read of an answer that arrives in several writes (a pickle over 16 KiB) breaks off with a
``BlockingIOError`` as soon as it runs ahead of the child's writes.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import multiprocessing as mp
import os
import pickle
import queue
import signal
import socket
import struct
import threading
import weakref
from collections.abc import Sequence
from multiprocessing.connection import Connection
from multiprocessing.reduction import ForkingPickler
from pathlib import Path
from typing import Any

import torch

from hydrarec.recommend.recommender import Recommendations, Recommender, UserQuery

# the children run below the server's priority: the event loop, which takes in the requests and
# writes the answers of every batch, gets a core as soon as it has work, instead of waiting for
# the scheduler to preempt a model process (more requests/s, lower p99: benchmarks/RESULTS.md)
MODEL_NICE = 10


class ModelProcess:
    """``recommend`` of the run at ``run``, computed in a child process (one call at a time).

    The child loads the run from its directory, on CPU, with ``threads`` torch threads (default:
    torch's own choice, e.g. ``OMP_NUM_THREADS``), on the CPUs ``cpus`` when given (Linux). It
    is a daemon: it ends with the server even when nobody closes it. A call gets
    ``call_timeout`` seconds; a child that does not answer in time is killed and the call fails.
    ``start=False`` spawns without waiting for the load (``wait_ready`` does), so several
    children can load at once.
    """

    def __init__(
        self,
        run: str | Path,
        index: str | None = None,
        *,
        threads: int | None = None,
        cpus: set[int] | None = None,
        start_timeout: float = 300.0,
        call_timeout: float = 60.0,
        start: bool = True,
    ) -> None:
        self.run = Path(run)
        self.index = index
        self.threads = threads
        self.cpus = cpus
        self.start_timeout = start_timeout
        self.call_timeout = call_timeout
        self._lock = threading.Lock()
        self._conn: Connection | None = None
        self._sock: socket.socket | None = None  # the event loop's view of _conn (a socketpair)
        self._proc: mp.process.BaseProcess | None = None
        self._spawn()
        if start:
            self.wait_ready()

    def _spawn(self) -> None:
        ctx = mp.get_context("spawn")
        parent, child = ctx.Pipe()
        args = (child, str(self.run), self.index, self.threads, self.cpus)
        proc = ctx.Process(target=_child, args=args, name="hydrarec-model", daemon=True)
        proc.start()
        child.close()
        # a duplicate of the parent's end, which the event loop reads without blocking
        sock = socket.socket(fileno=os.dup(parent.fileno()))
        self._conn, self._sock, self._proc = parent, sock, proc

    def wait_ready(self) -> None:
        """Wait until the child has loaded the run; raise its error (as itself) if it could not."""
        assert self._conn is not None and self._proc is not None
        if not self._conn.poll(self.start_timeout):
            self._discard()
            raise RuntimeError(
                f"the model process did not load {self.run} in {self.start_timeout} s"
            )
        try:
            status, payload = self._conn.recv()
        except EOFError:
            code = self._discard()
            raise RuntimeError(
                f"the model process exited while loading {self.run} (exit code {code})"
            ) from None
        if status == "error":
            self._discard()
            raise payload

    def _discard(self) -> int | None:
        """Stop the child however it is (killed if it does not leave), close the pipe; its exit
        code."""
        code = None
        if self._proc is not None:
            self._proc.join(0.5)
            if self._proc.is_alive():
                self._proc.kill()
                self._proc.join(5)
            code = self._proc.exitcode
        if self._sock is not None:
            self._sock.close()
        if self._conn is not None:
            self._conn.close()
        self._conn = self._sock = self._proc = None
        return code

    @property
    def pid(self) -> int | None:
        return None if self._proc is None else self._proc.pid

    def recommend(
        self, queries: Sequence[UserQuery], k: int = 10, **options: Any
    ) -> Recommendations:
        """``Recommender.recommend(queries, k, **options)``, in the child. A child that died
        since the last call is replaced first; one that dies or hangs during this call fails it
        with a ``RuntimeError`` (and is replaced at the next)."""
        with self._lock:
            self._ensure_alive()
            assert self._conn is not None and self._sock is not None
            self._sock.setblocking(True)  # Connection.recv reads a whole answer, however long
            try:
                self._conn.send((list(queries), k, options))
                if not self._conn.poll(self.call_timeout):
                    self._discard()
                    raise RuntimeError(
                        f"the model process did not answer in {self.call_timeout} s (killed)"
                    )
                status, payload = self._conn.recv()
            except (EOFError, OSError):
                code = self._discard()
                raise RuntimeError(f"the model process exited (exit code {code})") from None
        if status == "error":
            raise payload
        return payload  # type: ignore[no-any-return]

    async def recommend_async(
        self, queries: Sequence[UserQuery], k: int = 10, **options: Any
    ) -> Recommendations:
        """``recommend`` from an event loop, which goes on while the child works: the request
        is written to the pipe and the answer read as it arrives. One call at a time per process
        (the pool sees to it). A call that times out or is cancelled leaves the child in the
        middle of an answer nobody reads: it is killed, and replaced at the next call."""
        loop = asyncio.get_running_loop()
        if self._proc is None or not self._proc.is_alive():  # rare: spawning takes seconds
            await loop.run_in_executor(None, self._respawn)
        sock = self._sock
        assert sock is not None
        sock.setblocking(False)
        try:
            exchange = _exchange(loop, sock, (list(queries), k, options))
            message = await asyncio.wait_for(exchange, self.call_timeout)
        except asyncio.TimeoutError:  # first: TimeoutError is an OSError
            self._abandon(sock)
            raise RuntimeError(
                f"the model process did not answer in {self.call_timeout} s (killed)"
            ) from None
        except (EOFError, OSError):
            code = self._discard()
            raise RuntimeError(f"the model process exited (exit code {code})") from None
        except asyncio.CancelledError:
            self._abandon(sock)
            raise
        status, payload = ForkingPickler.loads(message)
        if status == "error":
            raise payload
        return payload  # type: ignore[no-any-return]

    def _respawn(self) -> None:
        with self._lock:
            self._ensure_alive()

    def _ensure_alive(self) -> None:
        """Replace a dead child (and wait for the new one to load); the caller holds the lock."""
        if self._proc is None or not self._proc.is_alive():
            self._discard()
            self._spawn()
            self.wait_ready()

    def _abandon(self, sock: socket.socket) -> None:
        """Stop waiting for the answer on ``sock`` and kill the child that owes it."""
        if sock is self._sock:
            self._discard()

    def stop(self) -> None:
        """Ask the child to leave (what ``close`` waits for)."""
        if self._conn is not None:
            with contextlib.suppress(OSError):  # the child is gone already
                self._conn.send(None)

    def close(self, timeout: float = 10.0) -> None:
        """Stop the child: it leaves after its current call; killed after ``timeout`` seconds."""
        self.stop()
        if self._lock.acquire(timeout=timeout):  # a call in flight ends first
            try:
                self._discard()
            finally:
                self._lock.release()
        elif self._proc is not None:  # a call that does not end: do not wait for it
            self._proc.kill()


class ModelPool:
    """``n`` ``ModelProcess``es of one run, loaded at once; each ``recommend`` call takes an
    idle one (calls from ``n`` threads run at once, on as many cores as the machine gives them).
    Each process holds a copy of the model: memory is ``n`` + 1 times one model with the server's.
    ``threads``: torch threads per process (default: the cores shared out, at least 1). With
    ``pin`` (Linux), process i runs on its own share of the CPUs this process may use, cycling
    when there are more processes than CPUs (more requests/s, lower p99: RESULTS.md); the HTTP
    process stays free to run anywhere."""

    def __init__(
        self,
        run: str | Path,
        index: str | None = None,
        processes: int = 1,
        threads: int | None = None,
        pin: bool = True,
    ) -> None:
        if processes < 1:
            raise ValueError(f"model processes must be >= 1, got {processes}")
        if threads is None and "OMP_NUM_THREADS" not in os.environ:
            threads = max(1, cpu_count() // processes)
        self._all: list[ModelProcess] = []
        try:
            for i in range(processes):
                cpus = cpu_share(i, processes) if pin else None
                self._all.append(ModelProcess(run, index, threads=threads, cpus=cpus, start=False))
            for proc in self._all:
                proc.wait_ready()
        except BaseException:
            self.close()
            raise
        self._idle: queue.SimpleQueue[ModelProcess] = queue.SimpleQueue()
        for proc in self._all:
            self._idle.put(proc)
        weakref.finalize(self, ModelPool._close_all, list(self._all))

    def __len__(self) -> int:
        return len(self._all)

    @property
    def pids(self) -> list[int | None]:
        return [proc.pid for proc in self._all]

    def recommend(
        self, queries: Sequence[UserQuery], k: int = 10, **options: Any
    ) -> Recommendations:
        proc = self._idle.get()
        try:
            return proc.recommend(queries, k, **options)
        finally:
            self._idle.put(proc)

    async def recommend_async(
        self, queries: Sequence[UserQuery], k: int = 10, **options: Any
    ) -> Recommendations:
        """``recommend`` from an event loop, on an idle process (``ModelProcess``)."""
        try:
            proc = self._idle.get_nowait()
        except queue.Empty:  # more callers than processes: wait for one off the loop
            proc = await asyncio.get_running_loop().run_in_executor(None, self._idle.get)
        try:
            return await proc.recommend_async(queries, k, **options)
        finally:
            self._idle.put(proc)

    def close(self) -> None:
        self._close_all(self._all)

    @staticmethod
    def _close_all(procs: list[ModelProcess]) -> None:
        for proc in procs:  # all asked first, so they leave together
            proc.stop()
        for proc in procs:
            proc.close()


async def _exchange(loop: asyncio.AbstractEventLoop, sock: socket.socket, obj: Any) -> bytearray:
    """Send ``obj`` down ``sock``; the pickle of the answer."""
    await _send_message(loop, sock, obj)
    return await _recv_message(loop, sock)


async def _send_message(loop: asyncio.AbstractEventLoop, sock: socket.socket, obj: Any) -> None:
    """Write ``obj`` as ``Connection.send`` would (``_recv_message`` says how)."""
    body = ForkingPickler.dumps(obj)
    size = len(body)
    head = struct.pack("!i", size) if size < 1 << 31 else struct.pack("!iQ", -1, size)
    data = memoryview(head + body)
    try:
        sent = sock.send(data)  # a request fits the socket's buffer, except a very long one
    except BlockingIOError:
        sent = 0
    if sent < len(data):
        await loop.sock_sendall(sock, data[sent:])


async def _recv_message(loop: asyncio.AbstractEventLoop, sock: socket.socket) -> bytearray:
    """The pickle of the next message ``Connection.send`` wrote to ``sock``, read as it arrives.

    ``multiprocessing.connection``'s format on Unix: a signed 4-byte big-endian length, or -1
    and an 8-byte length for 2 GiB or more, then the pickle (``Connection._send_bytes``)."""
    (size,) = struct.unpack("!i", await _recv_exactly(loop, sock, 4))
    if size == -1:
        (size,) = struct.unpack("!Q", await _recv_exactly(loop, sock, 8))
    return await _recv_exactly(loop, sock, size)


async def _recv_exactly(loop: asyncio.AbstractEventLoop, sock: socket.socket, n: int) -> bytearray:
    """``n`` bytes from the non-blocking ``sock``: what has arrived at once, the rest as it comes
    (through the loop, which wakes this when ``sock`` is readable); EOFError if it closes."""
    buf = bytearray(n)
    view = memoryview(buf)
    got = 0
    while got < n:
        try:
            read = sock.recv_into(view[got:])
        except BlockingIOError:
            read = await loop.sock_recv_into(sock, view[got:])
        if read == 0:
            raise EOFError(f"the socket closed after {got} of {n} bytes")
        got += read
    return buf


def _allowed_cpus() -> list[int] | None:
    """The CPUs this process may run on, in order; None where affinity is unknown (not Linux)."""
    try:
        return sorted(os.sched_getaffinity(0))
    except AttributeError:
        return None


def cpu_count() -> int:
    """CPU cores this process may run on."""
    cpus = _allowed_cpus()
    return len(cpus) if cpus is not None else os.cpu_count() or 1


def cpu_share(i: int, n: int) -> set[int] | None:
    """The CPUs of process ``i`` of ``n`` when the CPUs this process may use are shared out
    (each gets at least one; more processes than CPUs cycle); None where affinity is unknown."""
    cpus = _allowed_cpus()
    if cpus is None:
        return None
    each = max(1, len(cpus) // n)
    start = (i * each) % len(cpus)
    return set(cpus[start : start + each])


def _child(
    conn: Connection, run: str, index: str | None, threads: int | None, cpus: set[int] | None
) -> None:
    # the server's Ctrl-C reaches the whole process group; the server closes this process itself
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    if threads is not None:
        torch.set_num_threads(threads)
    if cpus:
        os.sched_setaffinity(0, cpus)
    if hasattr(os, "nice"):
        os.nice(MODEL_NICE)
    try:
        rec = Recommender.load(run, index=index)
        rec.warm()
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
            out = rec.recommend(queries, k, **options)
        except Exception as e:
            conn.send(("error", _portable(e)))
        else:
            conn.send(("ok", out))


def settle_heap() -> None:
    """Move everything allocated so far (torch, pandas, the model: ~240,000 objects) out of the
    garbage collector's reach: a full collection walks them all, a stall in the latency of
    every request in flight. Per-request garbage is collected as usual.
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
