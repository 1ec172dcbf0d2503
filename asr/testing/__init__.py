"""Test support shared by ``tests/`` and ``benchmarks/`` (not used by the pipeline itself).

:mod:`asr.testing.fuzz_inputs` generates fuzzed inputs for every input reader.
"""
