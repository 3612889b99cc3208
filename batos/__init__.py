"""The ``batos`` command line: the outermost layer.

It parses arguments and calls into the layer a command belongs to, importing
that layer only when the command runs (so a supervisor command never loads
the UVM). One module per command group.
"""
