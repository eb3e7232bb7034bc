"""Sweep specs and the runner: many seeds of many configurations on Ray Tune."""
