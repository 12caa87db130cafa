"""Budgets against measurements: one verdict per budget the profile sets, with its value, limit and margin.

Latency, memory, size, accuracy drop and perplexity increase are maximums; tokens per second are minimums. A budget
without a measurement is "not measured", never a pass: a gate that passes because nothing was measured is the
failure this tool exists to prevent.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

from edgekd.config.schema import Budgets

MB = 1_000_000  # decimal megabytes, as the precision solver and measure.py use

# budget key -> (metric name in flat metrics, "max" or "min", unit)
BUDGET_METRICS: dict[str, tuple[str, str, str]] = {
    "latency_p50_ms": ("latency_p50_ms", "max", "ms"),
    "latency_p90_ms": ("latency_p90_ms", "max", "ms"),
    "peak_memory_mb": ("peak_rss_mb", "max", "MB"),
    "artifact_size_mb": ("artifact_size_mb", "max", "MB"),
    "accuracy_drop": ("accuracy_drop", "max", ""),
    "prefill_tokens_per_s": ("prefill_tokens_per_s", "min", "tok/s"),
    "decode_tokens_per_s": ("decode_tokens_per_s", "min", "tok/s"),
    "perplexity_increase": ("perplexity_increase", "max", ""),
}

PASS, FAIL, NOT_MEASURED = "pass", "fail", "not measured"


@dataclass
class Verdict:
    metric: str  # the budget key (latency_p50_ms, ...)
    status: str  # pass, fail, not measured
    value: float | None
    limit: float
    kind: str  # max or min
    unit: str
    margin: float | None  # headroom in the metric's unit: limit - value (max) or value - limit (min); < 0 fails
    margin_pct: float | None  # margin as a percentage of the limit
    artifact: str = ""
    runner: str = ""

    def line(self) -> str:
        """One human line, e.g. `latency_p50_ms = 3.2 ms, limit 2 ms (max), margin -1.2 ms (-60%)`."""
        if self.value is None:
            return f"{self.metric}: not measured (limit {self.limit:g} {self.unit})".replace(" )", ")")
        unit = f" {self.unit}" if self.unit else ""
        return (f"{self.metric} = {self.value:.4g}{unit}, limit {self.limit:.4g}{unit} ({self.kind}), "
                f"margin {self.margin:+.4g}{unit} ({self.margin_pct:+.1f}%)")

    def to_dict(self) -> dict:
        return asdict(self)


def flat_metrics(bench: dict | None = None, size_bytes: int | None = None, parity: dict | None = None) -> dict:
    """The metric names budgets refer to, from a bench result (measure.py's JSON), a size and parity numbers."""
    out: dict = {}
    bench = bench or {}
    lat = bench.get("latency_ms") or {}
    if lat.get("p50") is not None:
        out["latency_p50_ms"] = lat["p50"]
    if lat.get("p90") is not None:
        out["latency_p90_ms"] = lat["p90"]
    if bench.get("peak_rss_mb") is not None:
        out["peak_rss_mb"] = bench["peak_rss_mb"]
    for key in ("prefill_tokens_per_s", "decode_tokens_per_s"):
        if bench.get(key) is not None:
            out[key] = bench[key]
    if size_bytes:
        out["artifact_size_mb"] = size_bytes / MB
    for key in ("accuracy_drop", "perplexity_increase"):
        if parity and parity.get(key) is not None:
            out[key] = parity[key]
    return out


def evaluate(budgets: Budgets | dict, metrics: dict, artifact: str = "", runner: str = "") -> list[Verdict]:
    """One verdict per budget that is set, in the order of the Budgets schema."""
    limits = budgets.model_dump() if isinstance(budgets, Budgets) else dict(budgets)
    verdicts = []
    for key, (metric, kind, unit) in BUDGET_METRICS.items():
        limit = limits.get(key)
        if limit is None:
            continue
        value = metrics.get(metric)
        if value is None:
            verdicts.append(Verdict(key, NOT_MEASURED, None, float(limit), kind, unit, None, None, artifact, runner))
            continue
        margin = (limit - value) if kind == "max" else (value - limit)
        status = PASS if margin >= 0 else FAIL
        verdicts.append(Verdict(key, status, float(value), float(limit), kind, unit, float(margin),
                                100.0 * margin / limit, artifact, runner))
    return verdicts


def unchecked(budgets: Budgets | dict) -> list[str]:
    """Budget keys the profile leaves unset (the report lists them as not checked)."""
    limits = budgets.model_dump() if isinstance(budgets, Budgets) else dict(budgets)
    return [k for k in BUDGET_METRICS if limits.get(k) is None]
