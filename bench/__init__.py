"""Benchmarks: ratios measured in one run (see BENCHMARKS.md). Run from the repository root:

    python -m bench.train_step      # FLOP/s of the train step vs the machine's matmul peak
    python -m bench.losses          # every loss fwd+bwd vs a same-size copy
    python -m bench.input           # pipeline and objectness images/s vs the train step
    python -m bench.scaling         # step time vs image size, batch and CPU device count
    python -m bench.vs_pytorch      # the same step in PyTorch eager (extra [bench])
    python -m bench.layers          # every conv formulation of models/layers.py, per layer
    python -m bench.cvat_zip_memory KIND   # peak memory of reading a hostile CVAT zip (not a ratio)
"""
