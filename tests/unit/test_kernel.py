"""The kernel: one message, one transaction; bad input is a clear error and changes nothing."""

from __future__ import annotations

import asyncio
import threading

import pytest

from uvm import (
    AsyncKernel,
    BadArguments,
    DoesNotUnderstand,
    MethodFailed,
    UnknownTarget,
    UnserializableResult,
    UVMError,
)


def last_tid(db):
    return db.storage.lastTransaction()


def test_targets_by_name_and_by_uuid(kernel):
    uuid = kernel.send("genesis", "uuid")
    assert kernel.send(uuid, "name") == "genesis"
    assert kernel.send("genesis", "printString").startswith("<genesis")


def test_keyword_and_python_spellings_are_the_same_message(kernel):
    kernel.send("genesis", "setSlot:value:", ["a", 1])
    kernel.send("genesis", "setSlot_value", ["b", 2])
    assert (kernel.send("genesis", "a"), kernel.send("genesis", "b")) == (1, 2)


def test_results_are_plain_values_and_references(kernel):
    kernel.send("genesis", "defineMethod:source:", [
        "sample", "def sample(self):\n    return [None, True, 1, 2.5, 's', b'b', {'k': [self]}]\n"])
    uuid = kernel.send("genesis", "uuid")
    assert kernel.send("genesis", "sample") == [None, True, 1, 2.5, "s", b"b", {"k": [{"$ref": uuid}]}]


def test_references_in_arguments_resolve_to_objects(kernel):
    kernel.send("genesis", "setSlot:value:", ["friend", {"$ref": "traits"}])
    traits = kernel.send("traits", "uuid")
    assert kernel.send("genesis", "friend") == {"$ref": traits}


def test_read_only_message_writes_no_transaction(kernel, db):
    before = last_tid(db)
    kernel.send("genesis", "describe")
    assert last_tid(db) == before


@pytest.mark.parametrize(
    ("target", "selector", "args", "error", "text"),
    [
        ("nobody", "printString", [], UnknownTarget, "no object with uuid or name 'nobody'"),
        ("genesis", "frobnicate", [], DoesNotUnderstand, "does not understand 'frobnicate'"),
        ("genesis", "clone", [1, 2], BadArguments, "takes 0 argument"),
        ("genesis", "name", [1], BadArguments, "data slot"),
        ("genesis", "setSlot:value:", ["x", {"$ref": "ghost"}], UnknownTarget, "ghost"),
        ("genesis", "setSlot:value:", ["_hidden", 1], UVMError, "not allowed"),
        ("genesis", "defineMethod:source:", ["f", "def f(self):\n  import os\n"], UVMError, "imports"),
        ("genesis", "", [], BadArguments, "non-empty"),
    ],
)
def test_bad_input_is_a_clear_error_and_changes_nothing(kernel, db, target, selector, args, error, text):
    before = last_tid(db)
    with pytest.raises(error, match=text):
        kernel.send(target, selector, args)
    assert last_tid(db) == before


def test_failure_after_writes_aborts_the_whole_message(kernel, db):
    kernel.send("genesis", "defineMethod:source:", [
        "half", "def half(self):\n    self.a = 1\n    clone_object(self).b = 2\n    return 1 / 0\n"])
    before = last_tid(db)
    objects_before = len(kernel.send("genesis", "slotNames"))
    with pytest.raises(MethodFailed, match="ZeroDivisionError"):
        kernel.send("genesis", "half")
    assert last_tid(db) == before
    assert len(kernel.send("genesis", "slotNames")) == objects_before
    with pytest.raises(DoesNotUnderstand):
        kernel.send("genesis", "a")


def test_unserializable_result_aborts_the_message(kernel, db):
    kernel.send("genesis", "defineMethod:source:", [
        "leak", "def leak(self):\n    self.touched = True\n    return set([1])\n"])
    before = last_tid(db)
    with pytest.raises(UnserializableResult, match="set"):
        kernel.send("genesis", "leak")
    assert last_tid(db) == before


def test_method_result_of_method_object_is_unserializable(kernel):
    kernel.send("genesis", "defineMethod:source:", ["me", "def me(self):\n    return self.clone\n"])
    with pytest.raises(UnserializableResult, match="BoundMethod"):
        kernel.send("genesis", "me")


def test_missing_selector_dispatches_does_not_understand_in_the_same_transaction(kernel, db):
    kernel.send("genesis", "defineMethod:source:", [
        "doesNotUnderstand:",
        "def doesNotUnderstand(self, message):\n"
        "    self.lastMiss = message['selector']\n"
        "    return ['caught', message['selector'], message['arguments']]\n",
    ])
    assert kernel.send("genesis", "fly:to:", ["north", 3]) == ["caught", "fly:to:", ["north", 3]]
    assert kernel.send("genesis", "lastMiss") == "fly:to:"


def test_infinite_recursion_is_an_error_not_a_crash(kernel):
    kernel.send("genesis", "defineMethod:source:", ["loop", "def loop(self):\n    return self.loop()\n"])
    with pytest.raises(MethodFailed, match="recursed too deeply|RecursionError"):
        kernel.send("genesis", "loop")


def test_control_flow_through_boolean_and_block_prototypes(kernel):
    yes = kernel.send("block", "clone")["$ref"]
    kernel.send(yes, "defineMethod:source:", ["value", "def value(self):\n    return 'yes'\n"])
    no = kernel.send("block", "clone")["$ref"]
    kernel.send(no, "defineMethod:source:", ["value", "def value(self):\n    return 'no'\n"])
    assert kernel.send("true", "ifTrue:ifFalse:", [{"$ref": yes}, {"$ref": no}]) == "yes"
    assert kernel.send("false", "ifTrue:ifFalse:", [{"$ref": yes}, {"$ref": no}]) == "no"
    assert kernel.send("false", "not") == {"$ref": kernel.send("true", "uuid")}

    cond = kernel.send("block", "clone")["$ref"]
    kernel.send(cond, "setSlot:value:", ["n", 0])
    kernel.send(cond, "defineMethod:source:", ["value", "def value(self):\n    return self.n < 5\n"])
    body = kernel.send("block", "clone")["$ref"]
    kernel.send(body, "setSlot:value:", ["counter", {"$ref": cond}])
    kernel.send(body, "defineMethod:source:", [
        "value", "def value(self):\n    c = self.counter\n    c.n = c.n + 1\n"])
    assert kernel.send(cond, "whileTrue:", [{"$ref": body}]) == 5
    assert kernel.send(cond, "n") == 5


def test_while_true_stops_at_max_iterations(kernel, db):
    forever = kernel.send("block", "clone")["$ref"]
    kernel.send(forever, "setSlot:value:", ["maxIterations", 50])
    kernel.send(forever, "defineMethod:source:", ["value", "def value(self):\n    return True\n"])
    with pytest.raises(MethodFailed, match="stopped after 50 iterations"):
        kernel.send(forever, "whileTrue:", [{"$ref": "block"}])


def test_concurrent_conflicting_writes_all_commit_after_retries(kernel):
    kernel.send("genesis", "setSlot:value:", ["hits", 0])
    kernel.send("genesis", "defineMethod:source:", [
        "hit", "def hit(self):\n    self.hits = self.hits + 1\n    return self.hits\n"])
    errors: list[BaseException] = []

    def worker():
        try:
            for _ in range(25):
                kernel.send("genesis", "hit")
        except BaseException as exc:  # collected and re-raised in the test thread
            errors.append(exc)

    threads = [threading.Thread(target=worker) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    assert not errors
    assert kernel.send("genesis", "hits") == 100


def test_async_front_runs_many_messages_concurrently(kernel):
    async def main():
        async with AsyncKernel(kernel, workers=4) as front:
            refs = await asyncio.gather(*(front.send("genesis", "clone") for _ in range(20)))
            await asyncio.gather(*(
                front.send(r["$ref"], "setSlot:value:", ["i", i]) for i, r in enumerate(refs)))
            values = await asyncio.gather(*(front.send(r["$ref"], "i") for r in refs))
            with pytest.raises(DoesNotUnderstand):
                await front.send("genesis", "nothing")
            return values

    assert asyncio.run(main()) == list(range(20))
