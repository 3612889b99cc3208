"""The immortal supervisor: owns the ZEO image server, the ZMQ routing and the
process table of UVM incarnations.

Not built yet (issue 3). It must never import ``uvm``, ``weaver``, ``crucible``
or ``ui_seed``: it is the part that must never need a restart.
"""
