"""Benchmarks and reliability scenarios.

The reliability scenarios (``common``, ``faults``, ``crashes``, ``fuzz``, ``load``) are shared by
``bench/reliability.py`` and ``tests/test_reliability*.py``: the figures the script prints come
from the code the tests run.
"""
