"""A model factory module that must never be imported by the tests that name it (trust checks)."""

raise RuntimeError("tests.experiment.never_imported was imported: user code ran without --trust-code")
