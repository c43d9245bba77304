"""Compare trained variants of a freeze sweep with the checkpoint they started from.

Weight change and BatchNorm drift per layer (frozen layers, declared or found unchanged, are
checked), weight distributions, dead channels gained and lost, activation similarity (debiased
linear CKA) and feature maps, written as an answer in words, a terminal summary, PNG plots and
one HTML page. Entry point: `cli.main`.
"""
