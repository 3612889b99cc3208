"""The immortal supervisor: owns the ZEO image server, the ZMQ routing and the
process table of UVM incarnations (``batos up`` runs ``server.Supervisor``).

It must never import ``uvm``, ``weaver``, ``crucible``, ``ui_seed`` or ``batos``:
it is the part that must never need a restart; incarnations are processes it
talks to through ``bridge``. docs/design.md draws its parts.
"""
