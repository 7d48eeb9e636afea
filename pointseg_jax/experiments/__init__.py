"""Runs of many configs through the package API: the demo (`make demo`) and the paper's experiments.

Only `main.py` and this package import `train`; everything else builds on `state`, `evaluate` and
`predict`.
"""
