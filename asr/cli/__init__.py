"""The ``asr`` command line. Only this package reads argv/env and exits."""
