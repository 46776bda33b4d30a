"""Unit tests: the engine in-process, with local servers standing in for the outside world."""
