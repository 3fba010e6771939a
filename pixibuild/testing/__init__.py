"""Builders of real test material (conda archives, channels, locks) for tests, benchmarks and the
embedded demo. Nothing here is used by a build; it ships so users can reproduce our tests."""
