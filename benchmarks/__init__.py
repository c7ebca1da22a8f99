"""The benchmark suite: input pipelines, train steps and inference, measured as
ratios in one run on the current machine (``python -m benchmarks.run``).

Every case runs in its own subprocess (:mod:`benchmarks.cases`) so that its
peak host memory can be read from the operating system and no case inherits
another's compiled functions, thread pools or allocator state. See
``benchmarks/README.md`` for the methodology and the profiling findings.
"""
