"""Structured channel pruning of a student (torch-pruning): the plan search, the cut, the per-layer table.

The stage that drives it (order, KD recovery, reporting) is src/edgekd/stages/prune.py; this package knows nothing
about recipes beyond the settings it is handed, so tests can prune a tiny model built in a few lines.
"""
