"""The AlchemicalCrucible: the staged review every self-modification passes.

Not built yet (issue 5). Today the image enforces the first line of it itself:
method sources compile under RestrictedPython (``uvm.methods``).
"""
