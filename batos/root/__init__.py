"""The composition root: the only code that wires ``uvm``, ``crucible`` and ``weaver``.

The layers below know nothing of each other beyond their floors (docs/design.md);
what an incarnation is made of is decided here, on the top floor, and handed down:

    mind         a weaver chat backend + the crucible -> the UVM's ``Synthesizer``
    inquiry      the Characterological Inquiry Loop on a kernel, with its real parts
    incarnation  the process the supervisor runs (``python -m batos.root.incarnation``):
                 confinement, the fork-server's table, then ``uvm.incarnation.Incarnation``
                 serving with the mind and the inquiry loop injected

Unlike the command line beside it (``batos/*.py``, which loads a layer only when a
command runs), these modules import their layers at the top; they are imported only
by the incarnation process and by the commands that assemble a mind (the incarnation
still loads the crucible and the training stack only when a mind or an inquiry loop
is configured: what it imports before its lock it holds for life). This package's
``__init__`` (and ``batos/__init__``) stays empty of imports, so
``python -m batos.root.incarnation`` loads only what the incarnation needs.
"""
