"""Development tools: local database servers for `make run`, `make cluster`, benchmarks and tests.

Not part of the production package (`notebook`); nothing under src/ imports from here.
"""
