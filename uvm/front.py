"""The asyncio front of the kernel: a queue and N workers, each with its own thread.

``AsyncKernel`` is what an incarnation's event loop talks to. ``send``
enqueues a message and awaits its result; N worker coroutines take messages
from the queue and run each with ``Kernel.send`` on the worker's own thread
(a single-thread executor per worker), so each worker's ZODB work happens on
one thread with its own connections and never blocks the loop.

Boundaries: ``send``, ``start`` and ``close`` run in the event loop; the
kernel runs in the worker threads. Errors raised by the kernel reach the
awaiting caller unchanged. ``close`` lets queued messages finish, then stops
the workers and their threads.
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
        self._queue: asyncio.Queue[tuple[Any, ...] | None] = asyncio.Queue(queue_size)
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
            self._tasks.append(asyncio.create_task(self._work(executor), name=f"batos-worker-{i}"))

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
        await self._queue.put((future, target, selector, tuple(args), author, request_id))
        return await future

    async def _work(self, executor: ThreadPoolExecutor) -> None:
        loop = asyncio.get_running_loop()
        while True:
            item = await self._queue.get()
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
                except Exception as exc:
                    if not future.cancelled():
                        future.set_exception(exc)
                else:
                    if not future.cancelled():
                        future.set_result(result)
            finally:
                self._queue.task_done()

    async def close(self) -> None:
        if self._closing:
            return
        self._closing = True
        for _ in self._tasks:
            await self._queue.put(None)
        await asyncio.gather(*self._tasks, return_exceptions=True)
        for executor in self._executors:
            executor.shutdown(wait=True)
        self._tasks.clear()
        self._executors.clear()
