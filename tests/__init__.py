"""Stepstream test suite."""
