"""The gRPC streaming recognition server, wire-compatible with Google Cloud Speech-to-Text v1.

* ``server/proto/``: our own ``google.cloud.speech.v1`` definitions (the API contract);
* :mod:`server.generated`: the protoc output, committed;
* :mod:`server.servicer`: translates messages <-> :class:`asr.recognizer.Recognizer` / ``Stream``;
* :mod:`server.scheduler`: batches the acoustic-model work of all active streams per tick;
* :mod:`server.main`: :func:`server.main.serve` (health, reflection, limits, graceful shutdown).

>>> from server.main import ServerConfig  # doctest: +SKIP
>>> ServerConfig().port, ServerConfig().host  # doctest: +SKIP
(50051, '127.0.0.1')
"""
