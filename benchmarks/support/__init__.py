"""Helpers shared by benchmark scripts and tests (never imported by ``src/``)."""
