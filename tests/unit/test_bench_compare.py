"""make bench's comparison logic on tiny real ONNX models: interleaving, pooling, ratios, the table, the machine line."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from edgekd.bench.compare import (Candidate, build_rows, child_measure, machine_info, machine_line, markdown_table,
                                  schedule, split_runs)


def _tiny_onnx(path: Path, width: int, seed: int) -> Path:
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    w = np.random.default_rng(seed).standard_normal((width, width)).astype(np.float32)
    graph = helper.make_graph(
        [helper.make_node("MatMul", ["x", "w"], ["h"]), helper.make_node("Relu", ["h"], ["y"])], "tiny",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", width])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["batch", width])],
        [numpy_helper.from_array(w, "w")])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.save(model, str(path))
    return path


def _inputs(path: Path, batch: int, width: int) -> Path:
    np.savez(path, __order__=np.array(["x"]), x=np.ones((batch, width), np.float32))
    return path


def test_schedule_rotates_start_and_skips_batches_a_candidate_cannot_take():
    a = Candidate("a", "m", "A", "onnxruntime", inputs={1: Path("1"), 8: Path("8")})
    b = Candidate("b", "m", "B", "onnxruntime", inputs={1: Path("1"), 8: Path("8")})
    c = Candidate("c", "m", "C", "executorch", inputs={1: Path("1")}, unsupported={8: "static batch 1"})
    order = [(r, batch, cand.key) for r, batch, cand in schedule([a, b, c], [1, 8], rounds=2)]
    assert order == [(0, 1, "a"), (0, 1, "b"), (0, 1, "c"), (0, 8, "a"), (0, 8, "b"),
                     (1, 1, "b"), (1, 1, "c"), (1, 1, "a"), (1, 8, "b"), (1, 8, "a")]
    assert split_runs(20, 3) == [7, 7, 6] and split_runs(2, 4) == [1, 1]


def test_interleaved_real_onnx_children_pool_rounds_and_render_table(tmp_path):
    small, big = _tiny_onnx(tmp_path / "small.onnx", 16, 0), _tiny_onnx(tmp_path / "big.onnx", 256, 1)
    base = Candidate("m/small", "tiny", "small fp32", "onnxruntime", small, small.stat().st_size,
                     inputs={1: _inputs(tmp_path / "s1.npz", 1, 16), 4: _inputs(tmp_path / "s4.npz", 4, 16)},
                     parity={"reference": True}, baseline=True)
    other = Candidate("m/big", "tiny", "big fp32", "onnxruntime", big, big.stat().st_size,
                      inputs={1: _inputs(tmp_path / "b1.npz", 1, 256)}, unsupported={4: "static batch 1"},
                      parity={"samples": 3, "cosine_mean": 0.99, "cosine_min": 0.98}, edgekd=True,
                      fp32_key="m/small")  # stands in for "the fp32 artifact of the same runtime"
    calls = []
    real = child_measure(threads=1)

    def measure(cand, batch, warmup, runs):
        calls.append((cand.key, batch, runs))
        return real(cand, batch, warmup, runs)

    from edgekd.bench.compare import run_interleaved

    results = run_interleaved([base, other], [1, 4], measure, rounds=2, runs=5, warmup=1)
    assert calls == [("m/small", 1, 3), ("m/big", 1, 3), ("m/small", 4, 3),
                     ("m/big", 1, 2), ("m/small", 1, 2), ("m/small", 4, 2)]
    assert all(r["ok"] for rs in results.values() for r in rs), results
    rows = build_rows([base, other], results, [1, 4])
    small_row, big_row = rows
    assert small_row["batches"][1]["latency_ms"]["n"] == 5  # 3 + 2 timed runs pooled over the two rounds
    assert small_row["batches"][1]["ratio"] == pytest.approx(1.0)
    ratio = big_row["batches"][1]["ratio"]
    assert ratio == pytest.approx(big_row["batches"][1]["latency_ms"]["p50"] / small_row["batches"][1]["latency_ms"]["p50"])
    speedup = big_row["batches"][1]["speedup_vs_fp32"]
    small_p50, big_p50 = (r["batches"][1]["latency_ms"]["p50"] for r in (small_row, big_row))
    assert speedup == pytest.approx(small_p50 / big_p50)
    assert "speedup_vs_fp32" not in small_row["batches"][1]  # the fp32 row is the baseline, not compared
    assert big_row["batches"][4] == {"ok": False, "na": "static batch 1"}
    assert big_row["first_run_ms"] > 0
    assert big_row["peak_rss_mb"] > 0 and big_row["load_ms"] > 0
    table = markdown_table(rows, [1, 4])
    lines = table.splitlines()
    assert len(lines) == 4 and lines[0].count("|") == lines[2].count("|") == lines[3].count("|")
    assert "n/a (static batch 1)" in lines[3] and "**big fp32**" in lines[3] and f"{ratio:.2f}x" in lines[3]
    assert "b1 speedup vs fp32, same runtime" in lines[0] and f"| {speedup:.2f}x |" in lines[3]
    assert "reference" in lines[2] and "cos 0.9900" in lines[3]


def test_failed_child_is_a_row_that_says_why(tmp_path):
    broken = tmp_path / "broken.onnx"
    broken.write_bytes(b"not an onnx file")
    cand = Candidate("m/broken", "tiny", "broken", "onnxruntime", broken, 16,
                     inputs={1: _inputs(tmp_path / "x.npz", 1, 4)})
    from edgekd.bench.compare import run_interleaved

    rows = build_rows([cand], run_interleaved([cand], [1], child_measure(threads=1), rounds=1, runs=1, warmup=0), [1])
    assert rows[0]["batches"][1]["ok"] is False and "cannot load" in rows[0]["batches"][1]["error"]
    assert "failed: onnxruntime cannot load" in markdown_table(rows, [1])


def test_machine_info_reads_isa_flags():
    text = "model name\t: Test CPU 9000\nflags\t\t: fpu sse2 avx2 fma avx512f avx512_vnni\n"
    info = machine_info(text)
    assert info["cpu"] == "Test CPU 9000" and info["vnni"] is True
    assert info["isa"]["avx2"] and info["isa"]["avx512f"] and not info["isa"]["amx_int8"]
    assert "VNNI: yes" in machine_line(info) and "avx512_vnni" in machine_line(info)
    assert machine_info("flags : avx2\n")["vnni"] is False
