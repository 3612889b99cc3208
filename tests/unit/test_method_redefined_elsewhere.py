"""A method redefined through one connection is the one another connection runs.

Each kernel thread (each lane) holds its ZODB connection across messages, and a
``Method`` caches its compiled function on itself (``_v_function``). ``define`` appends
to ``versions`` (a ``PersistentList`` of its own) and leaves the ``Method``'s own record
alone, so another connection's invalidation reaches the list, never the ``Method``: the
cached function must follow the current source, not outlive it. Also after an abort:
a define that was run (and its function cached) in a transaction that then aborted
leaves nothing behind when another connection commits a different source.
"""

from __future__ import annotations

import queue
import threading

import transaction

from uvm.methods import Method, cached_function

V1 = "def probe(self):\n    return 1\n"
V2 = "def probe(self):\n    return 2\n"
V3 = "def probe(self):\n    return 3\n"
BAD = "def probe(self):\n    return 'aborted'\n"


def test_another_connection_runs_the_new_source(db):
    tm1, tm2 = transaction.TransactionManager(), transaction.TransactionManager()
    c1, c2 = db.open(tm1), db.open(tm2)
    try:
        c1.root()["probe"] = Method(V1, author="a")
        tm1.commit()
        tm2.begin()
        assert c2.root()["probe"].function() is cached_function(V1)  # cached on c2's copy
        tm2.abort()

        tm1.begin()
        assert c1.root()["probe"].define(V2, author="a") == 2
        tm1.commit()
        tm2.begin()
        assert c2.root()["probe"].function() is cached_function(V2)
        tm2.abort()

        # a define run and used in a transaction that aborts, then another's commit
        tm2.begin()
        mine = c2.root()["probe"]
        assert mine.define(BAD, author="b") == 3
        assert mine.function() is cached_function(BAD)
        tm2.abort()
        tm1.begin()
        assert c1.root()["probe"].define(V3, author="a") == 3
        tm1.commit()
        tm2.begin()
        assert c2.root()["probe"].function() is cached_function(V3)
        tm2.abort()
    finally:
        c1.close()
        c2.close()


def test_a_kernel_thread_runs_a_method_redefined_by_another(kernel):
    kernel.send("genesis", "defineMethod:source:", ["probe", V1])
    asks: queue.Queue[bool] = queue.Queue()
    answers: queue.Queue[object] = queue.Queue()

    def lane() -> None:  # one thread, its connection held across messages, as a lane's
        while asks.get():
            answers.put(kernel.send("genesis", "probe"))

    thread = threading.Thread(target=lane)
    thread.start()
    try:
        for source, expected in ((V1, 1), (V2, 2), (V3, 3)):
            kernel.send("genesis", "defineMethod:source:", ["probe", source])
            asks.put(True)
            assert answers.get(timeout=30) == expected
    finally:
        asks.put(False)
        thread.join(timeout=30)
