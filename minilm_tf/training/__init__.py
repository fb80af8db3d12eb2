"""Runs that read configs and work directories: the objective study."""
