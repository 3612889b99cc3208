"""The raw baselines of bench_bridge: the same work as a batos message without the machinery.

- ``echo_broker`` + ``echo_worker``: a ZMQ 3-hop echo (client DEALER -> broker process with a
  ROUTER front and a ROUTER back -> worker process DEALER), the frame sent back as it came.
- ``echo_broker`` + ``zodb_worker``: the same layout whose worker, per request, opens a ZODB
  connection over ZEO with its transaction manager, begins, reads one attribute, aborts,
  closes and replies ``{id, value}``. One worker thread: the bench's read case has one
  target, which the supervisor routes to one lane of the incarnation.
- ``zeo_commits``: raw ZEO commits of ``n = n + 1``, one thread per object, each with its own
  connection and transaction manager.

Process functions run in ``multiprocessing`` spawn children until they are terminated.
"""

from __future__ import annotations

import inspect
import threading
import time
from typing import Any

import ormsgpack
import transaction
import zmq

from uvm import open_db

Result = tuple[int, float, list[float], int]  # messages, seconds, latencies, error replies
ZODB_ECHO_ROOT = "echo"  # the root key of the object the ZODB echo reads
ZODB_ECHO_ATTRIBUTE = "name"


def open_zeo(zeo: str, **kwargs: Any) -> Any:
    """``uvm.open_db`` over ZEO as the incarnation opens it: ``server_sync=False`` where
    ``open_db`` takes that parameter, else its default."""
    if server_sync_param():
        kwargs["server_sync"] = False
    return open_db(zeo=zeo, **kwargs)


def server_sync_param() -> bool:
    return "server_sync" in inspect.signature(open_db).parameters


def echo_broker(frontend: str, backend: str) -> None:
    ctx = zmq.Context()
    front, back = ctx.socket(zmq.ROUTER), ctx.socket(zmq.ROUTER)
    front.bind(frontend)
    back.bind(backend)
    poller = zmq.Poller()
    poller.register(front, zmq.POLLIN)
    poller.register(back, zmq.POLLIN)
    routes = ((front, lambda f: back.send_multipart([b"worker", *f])),  # [client, payload]
              (back, lambda f: front.send_multipart(f[1:])))  # [worker, client, payload]
    while True:
        events = dict(poller.poll())
        for sock, forward in routes:
            while sock in events:
                try:
                    forward(sock.recv_multipart(zmq.NOBLOCK))
                except zmq.Again:
                    break


def echo_worker(backend: str) -> None:
    sock = zmq.Context().socket(zmq.DEALER)
    sock.setsockopt(zmq.IDENTITY, b"worker")
    sock.connect(backend)
    while True:
        sock.send_multipart(sock.recv_multipart())  # [client, payload] back as it came


def zodb_worker(backend: str, zeo: str) -> None:
    db = open_zeo(zeo, pool_size=4)
    sock = zmq.Context().socket(zmq.DEALER)
    sock.setsockopt(zmq.IDENTITY, b"worker")
    sock.connect(backend)
    tm = transaction.TransactionManager(explicit=True)  # one per thread, reused (as the kernel)
    while True:
        client, payload = sock.recv_multipart()
        request = ormsgpack.unpackb(payload)
        tm.begin()
        conn = db.open(transaction_manager=tm)
        try:
            value = getattr(conn.root()[ZODB_ECHO_ROOT], ZODB_ECHO_ATTRIBUTE)
        finally:
            tm.abort()
            conn.close()
        sock.send_multipart([client, ormsgpack.packb({"id": request["id"], "value": value})])


def zeo_commits(db: Any, oids: list[bytes], seconds: float) -> Result:
    """One thread per oid, each with its own connection, committing ``n = n + 1``."""
    per: list[list[float]] = [[] for _ in oids]
    start = time.perf_counter()
    stop = start + seconds

    def commit_loop(oid: bytes, out: list[float]) -> None:
        tm = transaction.TransactionManager(explicit=True)
        tm.begin()
        conn = db.open(transaction_manager=tm)
        try:
            obj = conn.get(oid)
            while time.perf_counter() < stop:
                t0 = time.perf_counter()
                obj.n = obj.n + 1
                tm.commit()
                tm.begin()
                out.append(time.perf_counter() - t0)
        finally:
            tm.abort()
            conn.close()

    threads = [threading.Thread(target=commit_loop, args=a) for a in zip(oids, per, strict=True)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    latencies = [x for p in per for x in p]
    return len(latencies), time.perf_counter() - start, latencies, 0
