"""benchd's gRPC API as Python modules, generated from ``proto/`` by the build.

``benchd.v1`` holds ``*_pb2.py`` (messages, with ``.pyi`` stubs) and ``*_grpc.py`` (grpclib
service bases and stubs), written by ``setup.py`` at install time (``pip install .`` or
``pip install -e .``); they are not committed and never edited. Clients import this package
only; it imports nothing from the daemon.
"""
