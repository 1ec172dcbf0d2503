"""Test support shared by ``tests/`` and ``benchmarks/`` (never imported by the library).

:mod:`tests.support.fuzz_inputs` has one fuzz target per input reader (seeds from real
files, result checks); :mod:`tests.support.mutations` makes the inputs;
:mod:`tests.support.servicer_fuzz` drives the gRPC servicer with parsed requests.
The other modules hold the helpers and fakes that several test modules share (the
pytest fixtures built on them are in ``tests/conftest.py``).

Benchmarks import it as ``tests.support`` with the repository root first on ``sys.path``
(``tests/__init__.py`` makes ``tests`` a regular package, so that the ``tests`` package
that kaldi-io installs into site-packages does not shadow it).
"""
