"""On-device benchmarks with budgets: runners (local, ssh, adb), measurement, verdicts.

`bench_artifacts(ctx, cfg)` is the bench stage's entry point; `bench_folder(...)` is `edgekd bench`'s and
`import_log(...)` is `edgekd bench import`'s.
measure.py is self-contained: it is copied to remote boards and run there as a script.
"""

from .core import bench_artifacts, make_runner, raise_on_failures, write_inputs
from .folder import bench_folder, import_log

__all__ = ["bench_artifacts", "bench_folder", "import_log", "make_runner", "raise_on_failures", "write_inputs"]
