"""On-device benchmarks with budgets: runners (local, ssh, adb), measurement, verdicts.

core.bench_artifacts(ctx, cfg) is the bench stage's entry point; folder.bench_folder(...) is `edgekd bench`'s and
folder.import_log(...) is `edgekd bench import`'s.
measure.py is self-contained: it is copied to remote boards and run there as a script.
"""
