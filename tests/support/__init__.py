"""Reusable test helpers (real servers and fixtures shared across test modules)."""
