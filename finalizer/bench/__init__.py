"""Benchmarks behind ``kpo-finalizer bench``: API load, the finalizer alone, end to end.

Each module keeps a ``run(...) -> dict`` function (the CLI prints a table from it and writes it
as JSON) so figures in the README can be reproduced with one command.
"""
