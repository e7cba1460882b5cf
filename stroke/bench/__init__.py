"""`stroke-bench`: how fast the configured experiment trains, and what holds it back.

Every figure of its table is measured in the same run, so ratios compare like with like:
loader throughput from raw files and from the image cache, training throughput of
`stroke-train`'s loop against a plain PyTorch loop (same model, batch, inputs, precision),
real loader against tensors already in memory, start-up time to the first training step,
and memory. The `bench.*` settings are in conf/bench.yaml.
"""
