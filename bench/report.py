"""Aggregates repetitions (median, min, max) and writes ``latest.json`` and ``latest.md``."""

from __future__ import annotations

import json
import math
import statistics
from dataclasses import dataclass
from pathlib import Path
from typing import Any

SUBJECT = "pyftps"
RAW = "raw TLS"  # the baseline's row name in transfer tables


@dataclass(frozen=True)
class Metric:
    scenario: str
    field: str
    title: str
    unit: str
    higher_better: bool
    raw: str | None = None  # raw TLS baseline scenario to compare with ("raw_download"/"raw_upload")
    digits: int = 0

    @property
    def key(self) -> str:
        return f"{self.scenario}.{self.field}"


METRICS = [
    Metric("retr_curl", "mbps", "RETR, curl (first byte to 226)", "MB/s", True, "raw_download"),
    Metric("retr_ftplib", "mbps", "RETR data phase, ftplib (resumed session)", "MB/s", True, "raw_download"),
    Metric("stor_curl", "mbps", "STOR, curl (first byte to 226)", "MB/s", True, "raw_upload"),
    Metric("stor_ftplib", "mbps", "STOR data phase, ftplib (resumed session)", "MB/s", True, "raw_upload"),
    Metric("stor_ftplib", "reply_ms", "STOR: 226 after the last byte, ftplib", "ms", False, digits=1),
    Metric("retr_ftplib", "cpu_s_per_gb", "server CPU per GB, RETR (command to 226)", "s", False, digits=2),
    Metric("stor_ftplib", "cpu_s_per_gb", "server CPU per GB, STOR (command to 226)", "s", False, digits=2),
    Metric("sessions", "per_s", "sessions/s (AUTH TLS, login, PWD, QUIT), 4 clients", "/s", True),
    Metric("sessions", "cpu_ms_per_session", "server CPU per session", "ms", False, digits=2),
    Metric("idle_memory", "kib_per_session", "memory per idle TLS session (PSS)", "KiB", False),
    Metric(
        "idle_memory",
        "open_seconds_per_1000",
        "time to open 1000 TLS sessions (scaled)",
        "s",
        False,
        digits=2,
    ),
    Metric("list", "ms", "LIST of 2000 files in a session", "ms", False, digits=1),
    Metric("mlsd", "ms", "MLSD of 2000 files in a session", "ms", False, digits=1),
    Metric("latency", "p99_ms", "NOOP p99 during 4 PROT P downloads", "ms", False, digits=1),
    Metric("latency", "p50_ms", "NOOP p50 during 4 PROT P downloads", "ms", False, digits=2),
    Metric("latency", "download_mbps", "aggregate download rate meanwhile", "MB/s", True),
    Metric("latency", "idle_p99_ms", "NOOP p99 with no load", "ms", False, digits=2),
    # Opt-in scenarios (--only idle_10k / scale_1000): shown only when they ran.
    Metric("idle_10k", "failed", "10k idle TLS sessions: failed", "sessions", False),
    Metric("idle_10k", "open_seconds_per_1000", "10k idle sessions: time per 1000", "s", False, digits=2),
    Metric("idle_10k", "kib_per_session", "10k idle sessions: memory each (PSS)", "KiB", False, digits=1),
    Metric("scale_1000", "failed", "1000 clients RETR+STOR 1 MiB at once: failed", "clients", False),
    Metric("scale_1000", "throughput_mbps", "1000 clients: aggregate throughput", "MB/s", True),
    Metric("scale_1000", "p99_s", "1000 clients: p99 completion time", "s", False, digits=1),
    Metric("scale_1000", "rss_peak_mib", "1000 clients: server RSS at peak", "MiB", False),
    Metric("scale_1000", "rss_after_mib", "1000 clients: server RSS after", "MiB", False),
    Metric("scale_1000", "rss_idle_mib", "1000 clients: server RSS before", "MiB", False),
]

RAW_METRICS = {
    "raw_download": "raw TLS, sender reads the file, receiver discards (RETR-like)",
    "raw_upload": "raw TLS, receiver writes the file (STOR-like)",
}


def summarize(values: list[float]) -> dict[str, float]:
    return {
        "median": statistics.median(values),
        "min": min(values),
        "max": max(values),
        "n": float(len(values)),
    }


def _values(runs: dict[str, Any], scenario: str, server: str, field: str) -> list[float]:
    out = []
    for rep in runs.get(scenario, {}).get(server, []):
        value = rep.get("figures", {}).get(field)
        if isinstance(value, int | float) and math.isfinite(value):
            out.append(float(value))
    return out


def build_summary(runs: dict[str, Any], servers: list[str]) -> dict[str, Any]:
    summary: dict[str, Any] = {}
    for metric in METRICS:
        row: dict[str, Any] = {}
        for server in servers:
            values = _values(runs, metric.scenario, server, metric.field)
            if values:
                row[server] = summarize(values)
        if metric.raw:
            values = _values(runs, metric.raw, RAW, "mbps")
            if values and metric.field == "mbps":
                row[RAW] = summarize(values)
        peers = {s: v["median"] for s, v in row.items() if s not in (SUBJECT, RAW)}
        best = (max if metric.higher_better else min)(peers, key=peers.__getitem__) if peers else None
        for server, stats in row.items():
            if best is not None and server != RAW and peers[best]:
                stats["x_best_peer"] = stats["median"] / peers[best]
            if RAW in row and server != RAW:
                stats["x_raw"] = stats["median"] / row[RAW]["median"]
        summary[metric.key] = {"best_peer": best, "servers": row}
    for scenario in RAW_METRICS:
        values = _values(runs, scenario, RAW, "mbps")
        if values:
            summary[f"{scenario}.mbps"] = {"best_peer": None, "servers": {RAW: summarize(values)}}
    return summary


def _fmt(value: float | None, digits: int) -> str:
    if value is None or not math.isfinite(value):
        return "-"
    return f"{value:,.{digits}f}"


def _ratio(value: float | None) -> str:
    return "-" if value is None else f"{value:.2f}x"


def markdown(data: dict[str, Any]) -> str:
    meta, servers, summary = data["meta"], data["servers"], data["summary"]
    lines = [
        f"# pyftps benchmark ({'quick' if meta['quick'] else 'full'} run)",
        "",
        f"{meta['started']} · {meta['rounds']} rounds, servers alternating · file "
        f"{meta['settings']['file_size'] >> 20} MiB · {meta['settings']['idle_sessions']} idle sessions · "
        f"took {meta['duration_s']:.0f} s",
        "",
        "## Machine",
        "",
    ]
    lines += [f"- {key}: {value}" for key, value in meta["machine"].items()]
    lines += ["", "## Summary (medians; ratios: pyftps ÷ best peer, pyftps ÷ raw TLS)", ""]
    head = ["metric", *servers, "best peer", "pyftps ÷ best peer", "pyftps ÷ raw TLS"]
    lines += ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for metric in METRICS:
        entry = summary.get(metric.key)
        if not entry or not entry["servers"]:
            continue
        row = entry["servers"]
        cells = [f"{metric.title} ({metric.unit}, {'higher' if metric.higher_better else 'lower'} is better)"]
        cells += [_fmt(row[s]["median"], metric.digits) if s in row else "-" for s in servers]
        cells.append(entry["best_peer"] or "-")
        mine = row.get(SUBJECT, {})
        cells += [_ratio(mine.get("x_best_peer")), _ratio(mine.get("x_raw"))]
        lines.append("| " + " | ".join(cells) + " |")
    for scenario, title in RAW_METRICS.items():
        entry = summary.get(f"{scenario}.mbps")
        if entry:
            stats = entry["servers"][RAW]
            lines.append(
                f"\n{title}: median {stats['median']:,.0f} MB/s "
                f"(min {stats['min']:,.0f}, max {stats['max']:,.0f})"
            )
    lines += ["", "## Per metric (median, min, max over rounds)", ""]
    for metric in METRICS:
        entry = summary.get(metric.key)
        if not entry or not entry["servers"]:
            continue
        lines += [f"### {metric.title} ({metric.unit})", ""]
        lines += [
            "| server | median | min | max | n | x best peer | x raw TLS |",
            "|---|---|---|---|---|---|---|",
        ]
        for server, stats in entry["servers"].items():
            cells = [server, *(_fmt(stats[k], metric.digits) for k in ("median", "min", "max"))]
            cells += [str(int(stats["n"])), _ratio(stats.get("x_best_peer")), _ratio(stats.get("x_raw"))]
            lines.append("| " + " | ".join(cells) + " |")
        lines.append("")
    notes = data.get("notes", [])
    if notes:
        lines += ["## Skips and errors", ""]
        lines += [f"- {note}" for note in notes]
        lines.append("")
    return "\n".join(lines) + "\n"


def write(data: dict[str, Any], out_dir: Path) -> tuple[Path, Path]:
    out_dir.mkdir(parents=True, exist_ok=True)
    data["summary"] = build_summary(data["runs"], data["servers"])
    json_path, md_path = out_dir / "latest.json", out_dir / "latest.md"
    json_path.write_text(json.dumps(data, indent=1, sort_keys=False) + "\n")
    md_path.write_text(markdown(data))
    return json_path, md_path
