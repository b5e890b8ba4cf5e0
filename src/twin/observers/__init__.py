"""Observers: quantities derived from the solution while it runs."""
