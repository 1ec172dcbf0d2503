"""Test support shared by ``tests/`` and ``benchmarks/`` (not used by the pipeline itself).

:mod:`asr.testing.fuzz_inputs` has one fuzz target per input reader (seeds from real
files, result checks); :mod:`asr.testing.mutations` makes the inputs;
:mod:`asr.testing.servicer_fuzz` drives the gRPC servicer with parsed requests.
"""
