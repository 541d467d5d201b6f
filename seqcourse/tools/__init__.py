"""Tooling around the book: the benchmarks behind ``make bench`` and the notebooks' set-up.

Its modules::

    bench           executes every book notebook (wall time, peak memory), then runs the model tables
    bench_models    every model against torch's reference implementation (time and memory ratios)
    bench_scan      the scans against each other and against a Blelloch reference
    notebook_setup  the set-up every chapter runs in its first cell
"""
