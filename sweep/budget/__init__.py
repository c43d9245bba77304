"""Budgeted sweeps (`sweep.budget`): successive halving over the variants of a sweep, by training time."""
