"""The asyncio front of the kernel: N workers, each with its own queue and thread.

``AsyncKernel`` is for asyncio code that runs messages (an incarnation does
not: its requests run on its lanes' threads, ``uvm.lanes``). ``send``
enqueues a message and awaits its result; each of N worker coroutines takes
messages from its own queue and runs them with ``Kernel.send`` on the
worker's own thread (a single-thread executor per worker), so each worker's
ZODB work happens on one thread with its own connections and never blocks
the loop. Messages are assigned to workers by their target, so messages to
one object run one after another instead of conflicting with each other and
retrying; messages to different objects run concurrently.

Boundaries: ``send``, ``start`` and ``close`` run in the event loop; the
kernel runs in the worker threads. Errors raised by the kernel reach the
awaiting caller unchanged. ``close`` lets queued messages finish, then stops
the workers and their threads. A worker survives whatever a message raises:
anything that is not an ``Exception`` (a kernel signal that escaped) reaches
the caller as ``ImageError``.
"""

from __future__ import annotations

import asyncio
import functools
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from .errors import ImageError
from .kernel import Kernel

__all__ = ["AsyncKernel"]


class AsyncKernel:
    def __init__(self, kernel: Kernel, *, workers: int = 4, queue_size: int = 1024) -> None:
        if workers < 1:
            raise ValueError("workers must be at least 1")
        self.kernel = kernel
        self.workers = workers
        self._queues: list[asyncio.Queue[tuple[Any, ...] | None]] = [
            asyncio.Queue(queue_size) for _ in range(workers)
        ]
        self._tasks: list[asyncio.Task[None]] = []
        self._executors: list[ThreadPoolExecutor] = []
        self._closing = False

    async def __aenter__(self) -> AsyncKernel:
        self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    def start(self) -> None:
        for i in range(self.workers):
            executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix=f"batos-worker-{i}")
            self._executors.append(executor)
            self._tasks.append(
                asyncio.create_task(self._work(executor, self._queues[i]), name=f"batos-worker-{i}")
            )

    async def send(
        self,
        target: Any,
        selector: str,
        args: Sequence[Any] = (),
        *,
        author: str | None = None,
        request_id: str | None = None,
    ) -> Any:
        if self._closing or not self._tasks:
            raise ImageError("the kernel front is not running")
        future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        queue = self._queues[hash(str(target)) % self.workers]
        await queue.put((future, target, selector, tuple(args), author, request_id))
        return await future

    async def run(self, func: Any, *args: Any) -> Any:
        """Run ``func(*args)`` on worker 0's thread (maintenance, validation)."""
        return await asyncio.get_running_loop().run_in_executor(self._executors[0], func, *args)

    async def _work(
        self, executor: ThreadPoolExecutor, queue: asyncio.Queue[tuple[Any, ...] | None]
    ) -> None:
        loop = asyncio.get_running_loop()
        while True:
            item = await queue.get()
            try:
                if item is None:
                    return
                future, target, selector, args, author, request_id = item
                if future.cancelled():
                    continue
                try:
                    call = functools.partial(
                        self.kernel.send, target, selector, args, author=author, request_id=request_id
                    )
                    result = await loop.run_in_executor(executor, call)
                except asyncio.CancelledError:
                    raise
                except BaseException as exc:  # noqa: BLE001 - a worker never dies of a message
                    if not isinstance(exc, Exception):  # a signal that escaped the kernel
                        exc = ImageError(f"the kernel let {type(exc).__name__} escape; the "
                                         "message was aborted")
                    if not future.cancelled():
                        future.set_exception(exc)
                else:
                    if not future.cancelled():
                        future.set_result(result)
            finally:
                queue.task_done()

    async def close(self) -> None:
        if self._closing:
            return
        self._closing = True
        for queue in self._queues:
            await queue.put(None)
        await asyncio.gather(*self._tasks, return_exceptions=True)
        for executor in self._executors:
            executor.shutdown(wait=True)
        self._tasks.clear()
        self._executors.clear()
