"""The shared floor: the words every layer of batos speaks, and nothing else.

``lexicon`` sits below every other package (``bridge``, ``envs``, ``uvm``,
``weaver``, ``crucible``, ``supervisor``, ``ui_seed``, ``batos``) and imports
none of them: the standard library and pydantic only
(``tests/unit/test_layering.py``). What lives here is what two layers must
agree on and may not import from each other:

    errors   ``TransientError``: the one base of every retryable error, so a
             caller can catch "retry later" across layers
    frames   the tags of the supervisor <-> incarnation backend frames
    acts     the autopoietic_act schema (the kinds of act, their fields and
             limits); the UVM applies acts, the weaver trains on them. Its
             ``ActError`` (a ``ValueError``) is the floor's one error: each
             layer turns it into its own (``InvalidAct``, ``InvalidRecord``)
    names    the slot-name rule the schema and the image share
"""
