"""Helpers for tests and benchmarks (synthetic media); not used by the engine at run time."""
