"""Budgets against measurements: one verdict per budget the profile sets, with its value, limit and margin.

Latency, memory, size, accuracy drop and perplexity increase are maximums; tokens per second and the speedup over
the fp32 artifact are minimums. A budget without a measurement is "not measured", never a pass: a gate that passes
because nothing was measured is the failure this tool exists to prevent.

Where a number was measured matters as much as the number. Latency, memory, tokens/s and speedup are properties of
the device: a phone's 60 ms budget says nothing about this x86 host's 12 ms. Such a budget is judged only by a
measurement taken on the profile's device (the adb or ssh runner, an imported device log, or the local runner when
the profile declares `runner.device_is_host`); a host measurement becomes "not measured on the device", keeps its
value as `host_value` for the report, and makes the overall verdict "unverified". Size and accuracy are the same on
every device and are always judged. This module is the one place verdicts are computed (verify's accuracy gates,
the bench runners, the LLM pipeline and `edgekd bench import` all call `judge_value`/`evaluate`).
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
    "min_speedup_vs_fp32": ("speedup_vs_fp32", "min", "x"),
}
# Budgets whose value depends on the machine that measured it: judged only on the profile's device.
DEVICE_BUDGETS = ("latency_p50_ms", "latency_p90_ms", "peak_memory_mb", "prefill_tokens_per_s",
                  "decode_tokens_per_s", "min_speedup_vs_fp32")
# Budgets that only mean something for some tasks (an LLM has no accuracy_drop, a CNN no tokens/s).
LLM_ONLY = ("prefill_tokens_per_s", "decode_tokens_per_s", "perplexity_increase")
NOT_FOR_LLM = ("accuracy_drop", "latency_p50_ms", "latency_p90_ms", "min_speedup_vs_fp32")

PASS, FAIL, NOT_MEASURED = "pass", "fail", "not measured"
NOT_ON_DEVICE = "not measured on the device"
UNVERIFIED = "unverified"
DEVICE_RUNNERS = ("ssh", "adb", "import")  # runners that measure on the profile's device by construction


@dataclass
class Verdict:
    metric: str  # the budget key (latency_p50_ms, ...)
    status: str  # pass, fail, not measured, not measured on the device
    value: float | None
    limit: float
    kind: str  # max or min
    unit: str
    margin: float | None  # headroom in the metric's unit: limit - value (max) or value - limit (min); < 0 fails
    margin_pct: float | None  # margin as a percentage of the limit
    artifact: str = ""
    runner: str = ""
    measured_on: str = ""  # "device", "host" or "" (size, accuracy: the same everywhere)
    host_value: float | None = None  # a host measurement of a device budget: reported, not judged
    basis: str = ""  # how the value was obtained, when that needs saying

    def line(self) -> str:
        """One human line, e.g. `latency_p50_ms = 3.2 ms, limit 2 ms (max), margin -1.2 ms (-60%)`."""
        unit = f" {self.unit}" if self.unit else ""
        if self.status == NOT_ON_DEVICE:
            host = "" if self.host_value is None else f"; host timing {self.host_value:.4g}{unit}, not judged"
            return f"{self.metric}: not measured on the device (limit {self.limit:g}{unit}{host})"
        if self.value is None:
            return f"{self.metric}: not measured (limit {self.limit:g}{unit})"
        return (f"{self.metric} = {self.value:.4g}{unit}, limit {self.limit:.4g}{unit} ({self.kind}), "
                f"margin {self.margin:+.4g}{unit} ({self.margin_pct:+.1f}%)")

    def to_dict(self) -> dict:
        return asdict(self)


def on_device(runner_kind: str, device_is_host: bool = False) -> bool:
    """Does a runner of this kind measure on the profile's device? ssh/adb/import: yes; local: only when the
    profile says this host is the device."""
    return runner_kind in DEVICE_RUNNERS or (runner_kind == "local" and bool(device_is_host))


def site(runner_kind: str, device_is_host: bool, description: str, profile: str) -> dict:
    """The record every measurement carries: where it ran, on which runner, and what that machine is."""
    return {"measured_on": "device" if on_device(runner_kind, device_is_host) else "host", "runner": runner_kind,
            "description": description, "profile": profile}


def judge_value(metric: str, value: float | None, limit: float, kind: str, unit: str = "", *, artifact: str = "",
                runner: str = "", measured_on: str = "", basis: str = "") -> Verdict:
    """The one verdict computation: pass/fail with margin, or "not measured" when there is no value."""
    if value is None:
        return Verdict(metric, NOT_MEASURED, None, float(limit), kind, unit, None, None, artifact, runner,
                       measured_on, None, basis)
    margin = (limit - value) if kind == "max" else (value - limit)
    return Verdict(metric, PASS if margin >= 0 else FAIL, float(value), float(limit), kind, unit, float(margin),
                   100.0 * margin / limit if limit else 0.0, artifact, runner, measured_on, None, basis)


def flat_metrics(bench: dict | None = None, size_bytes: int | None = None, parity: dict | None = None) -> dict:
    """The metric names budgets refer to, from a bench result (measure.py's JSON), a size and parity numbers.

    Memory: a result may say which number is the runner's own process (`memory_for_budget`); the pip ExecuTorch
    runtime needs torch in its process, so measure.py leaves that value None there rather than judging torch."""
    out: dict = {}
    bench = bench or {}
    lat = bench.get("latency_ms") or {}
    if lat.get("p50") is not None:
        out["latency_p50_ms"] = lat["p50"]
    if lat.get("p90") is not None:
        out["latency_p90_ms"] = lat["p90"]
    if "memory_for_budget" in bench:
        if (bench["memory_for_budget"] or {}).get("value") is not None:
            out["peak_rss_mb"] = bench["memory_for_budget"]["value"]
    elif bench.get("peak_rss_mb") is not None:
        out["peak_rss_mb"] = bench["peak_rss_mb"]
    for key in ("prefill_tokens_per_s", "decode_tokens_per_s", "speedup_vs_fp32"):
        if bench.get(key) is not None:
            out[key] = bench[key]
    if size_bytes:
        out["artifact_size_mb"] = size_bytes / MB
    for key in ("accuracy_drop", "perplexity_increase"):
        if parity and parity.get(key) is not None:
            out[key] = parity[key]
    return out


def evaluate(budgets: Budgets | dict, metrics: dict, artifact: str = "", runner: str = "",
             device: bool | None = None) -> list[Verdict]:
    """One verdict per budget that is set, in the order of the Budgets schema.

    device: True when the metrics were measured on the profile's device, False on another host (device budgets then
    become "not measured on the device"), None for metrics that do not depend on the machine."""
    limits = budgets.model_dump() if isinstance(budgets, Budgets) else dict(budgets)
    verdicts = []
    for key, (metric, kind, unit) in BUDGET_METRICS.items():
        limit = limits.get(key)
        if limit is None:
            continue
        value = metrics.get(metric)
        where = "" if device is None or key not in DEVICE_BUDGETS else ("device" if device else "host")
        if where == "host":
            verdicts.append(Verdict(key, NOT_ON_DEVICE, None, float(limit), kind, unit, None, None, artifact, runner,
                                    where, None if value is None else float(value)))
            continue
        verdicts.append(judge_value(key, value, limit, kind, unit, artifact=artifact, runner=runner,
                                    measured_on=where))
    return verdicts


def unchecked(budgets: Budgets | dict) -> list[str]:
    """Budget keys the profile leaves unset (the report lists them as not checked)."""
    limits = budgets.model_dump() if isinstance(budgets, Budgets) else dict(budgets)
    return [k for k in BUDGET_METRICS if limits.get(k) is None]


def applicable(key: str, task: str | None) -> bool:
    if task == "causal-lm":
        return key not in NOT_FOR_LLM
    return key not in LLM_ONLY


def missing_budgets(budgets: Budgets | dict, verdicts: list[dict], task: str | None = None) -> list[str]:
    """Budgets the profile sets that no verdict speaks to (e.g. latency when the bench stage did not run)."""
    limits = budgets.model_dump() if isinstance(budgets, Budgets) else dict(budgets)
    seen = {v.get("metric") for v in verdicts}
    return [k for k in BUDGET_METRICS if limits.get(k) is not None and k not in seen and applicable(k, task)]


def overall_verdict(verdicts: list[dict], missing: list[str] | tuple = ()) -> str:
    """fail (a budget failed), unverified (a budget not measured, or not on the device), pass, or no budgets."""
    if any(v.get("status") == FAIL for v in verdicts):
        return FAIL
    if missing or any(v.get("status") in (NOT_MEASURED, NOT_ON_DEVICE) for v in verdicts):
        return UNVERIFIED
    return PASS if verdicts else "no budgets checked"


def unverified_reasons(verdicts: list[dict], missing: list[str] | tuple = ()) -> list[str]:
    """Why a verdict is unverified, one line per reason, naming the budgets: what a person must do next."""
    lines = []
    host = sorted({v["metric"] for v in verdicts if v.get("status") == NOT_ON_DEVICE})
    if host:
        lines.append(f"{', '.join(host)}: not measured on the device (the numbers shown are host timings); "
                     "measure on the device with `edgekd bench --runner adb|ssh` or `edgekd bench import`")
    unmeasured = sorted({v["metric"] for v in verdicts if v.get("status") == NOT_MEASURED})
    if unmeasured:
        lines.append(f"{', '.join(unmeasured)}: not measured (the runner reported no value)")
    if missing:
        lines.append(f"{', '.join(missing)}: no measurement of the device's artifact (bench not run, or its "
                     "runtime is not on this host)")
    return lines
