"""Compare trained variants of a freeze sweep with the checkpoint they started from.

Weight change and BatchNorm drift per layer (with a check that frozen layers did not move),
weight distributions, dead channels, activation similarity (debiased linear CKA) and feature
maps, written as a terminal summary, PNG plots and one HTML page. Entry point: `cli.main`.
"""
