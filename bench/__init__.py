"""Stepstream's benchmark suite: ``make bench`` (or ``python -m bench``) prints every figure.

Nothing here is a test: the figures are measurements, compared with targets in the
printed table and never asserted. Every load goes to 127.0.0.1 and is bounded.
"""
