"""Portside benchmark harness (`make bench`, `python -m bench.run`).

Every module in this package may register measurements with
:func:`bench.core.measurement`; :mod:`bench.run` imports them all, runs the
limits first, then the figures, and reports every figure as a ratio to a limit
measured in the same run.
"""
