"""Test helpers shared by the unit and integration suites: local stand-ins of outside services."""
