"""Unit tests for pyftps.server.metrics: names, labels, bounded cardinality and private registries."""

from __future__ import annotations

import threading

import pytest
from prometheus_client import generate_latest

from pyftps.server.metrics import Metrics
from pyftps.tls.contexts import ReuseVerdict


@pytest.fixture
def metrics() -> Metrics:
    return Metrics(process_metrics=False)


def value(m: Metrics, name: str, **labels: str) -> float:
    sample = m.registry.get_sample_value(name, labels)
    return 0.0 if sample is None else sample


def test_sessions_count_and_active_gauge(metrics: Metrics) -> None:
    metrics.session_opened("explicit")
    metrics.session_opened("explicit")
    metrics.session_opened("implicit")
    metrics.session_closed("explicit")
    assert value(metrics, "pyftps_sessions_total", listener="explicit") == 2
    assert value(metrics, "pyftps_sessions_total", listener="implicit") == 1
    assert value(metrics, "pyftps_sessions_closed_total", listener="explicit") == 1
    assert value(metrics, "pyftps_sessions_active") == 2


def test_active_gauges_read_callbacks(metrics: Metrics) -> None:
    metrics.session_opened("explicit")
    assert value(metrics, "pyftps_transfers_active") == 0
    live = {"sessions": 7, "transfers": 3}
    metrics.set_active_callbacks(sessions=lambda: live["sessions"], transfers=lambda: live["transfers"])
    assert value(metrics, "pyftps_sessions_active") == 7
    assert value(metrics, "pyftps_transfers_active") == 3
    live["transfers"] = 0
    assert value(metrics, "pyftps_transfers_active") == 0


def test_extra_close_does_not_go_negative(metrics: Metrics) -> None:
    metrics.session_closed("explicit")
    assert value(metrics, "pyftps_sessions_active") == 0


def test_logins_bans_refusals(metrics: Metrics) -> None:
    metrics.login(True)
    metrics.login(False)
    metrics.login(False)
    metrics.ban()
    metrics.connection_refused("banned")
    metrics.connection_refused("something else")
    assert value(metrics, "pyftps_logins_total", result="ok") == 1
    assert value(metrics, "pyftps_logins_total", result="failed") == 2
    assert value(metrics, "pyftps_bans_total") == 1
    assert value(metrics, "pyftps_connections_refused_total", reason="banned") == 1
    assert value(metrics, "pyftps_connections_refused_total", reason="other") == 1


def test_tls_handshakes(metrics: Metrics) -> None:
    metrics.tls_handshake("control", "TLSv1.3", "TLS_AES_256_GCM_SHA384", 0.004)
    metrics.tls_handshake("data", "TLSv1.2", "ECDHE-ECDSA-AES128-GCM-SHA256", 0.002)
    metrics.tls_handshake("data", "TLSv9", "", 0.5)
    metrics.tls_handshake_failed("data")
    assert (
        value(
            metrics,
            "pyftps_tls_handshakes_total",
            channel="control",
            version="TLSv1.3",
            cipher="TLS_AES_256_GCM_SHA384",
        )
        == 1
    )
    assert (
        value(metrics, "pyftps_tls_handshakes_total", channel="data", version="other", cipher="unknown") == 1
    )
    assert value(metrics, "pyftps_tls_handshake_seconds_count", channel="data") == 2
    assert value(metrics, "pyftps_tls_handshake_seconds_sum", channel="control") == pytest.approx(0.004)
    assert value(metrics, "pyftps_tls_handshake_seconds_bucket", channel="control", le="0.005") == 1
    assert value(metrics, "pyftps_tls_handshake_failures_total", channel="data") == 1


def test_data_reuse_accepts_enum_and_names(metrics: Metrics) -> None:
    metrics.data_reuse(ReuseVerdict.SAME_SESSION)
    metrics.data_reuse("same_session")
    metrics.data_reuse("REFUSED")
    metrics.data_reuse(ReuseVerdict.OTHER_SESSION)
    metrics.data_reuse("bogus")
    assert value(metrics, "pyftps_data_tls_resumptions_total", verdict="same_session") == 2
    assert value(metrics, "pyftps_data_tls_resumptions_total", verdict="refused") == 1
    assert value(metrics, "pyftps_data_tls_resumptions_total", verdict="other_session") == 1
    assert value(metrics, "pyftps_data_tls_resumptions_total", verdict="unknown") == 1


def test_transfers(metrics: Metrics) -> None:
    metrics.transfer("RETR", "ok", bytes_in=0, bytes_out=1000, prot="P", seconds=0.5)
    metrics.transfer("stor", "aborted", bytes_in=300, bytes_out=0, prot="C", seconds=2.0)
    metrics.transfer("XYZ", "weird", bytes_in=-5, bytes_out=-5, prot="E", seconds=-1.0)
    assert value(metrics, "pyftps_transfers_total", kind="RETR", result="ok", prot="P") == 1
    assert value(metrics, "pyftps_transfers_total", kind="STOR", result="aborted", prot="C") == 1
    assert value(metrics, "pyftps_transfers_total", kind="OTHER", result="other", prot="other") == 1
    assert value(metrics, "pyftps_sent_bytes_total", kind="RETR") == 1000
    assert value(metrics, "pyftps_received_bytes_total", kind="STOR") == 300
    assert value(metrics, "pyftps_received_bytes_total", kind="OTHER") == 0
    assert value(metrics, "pyftps_transfer_duration_seconds_sum", kind="STOR") == 2.0
    assert value(metrics, "pyftps_transfer_duration_seconds_sum", kind="OTHER") == 0.0


def test_replies_and_commands(metrics: Metrics) -> None:
    for code in (220, 331, 230, 230, 150, 226, 42):
        metrics.reply(code)
    metrics.command("retr", 0.01)
    metrics.command("RETR", 0.02)
    metrics.command("FROBNICATE", 0.001)
    metrics.command("x" * 1000, 0.001)
    assert value(metrics, "pyftps_replies_total", code="230") == 2
    assert value(metrics, "pyftps_replies_total", code="150") == 1
    assert value(metrics, "pyftps_replies_total", code="other") == 1
    assert value(metrics, "pyftps_command_duration_seconds_count", command="RETR") == 2
    assert value(metrics, "pyftps_command_duration_seconds_count", command="OTHER") == 2


def test_unknown_verbs_do_not_grow_series(metrics: Metrics) -> None:
    for i in range(500):
        metrics.command(f"V{i}", 0.0)
        metrics.reply(1000 + i)
    text = generate_latest(metrics.registry).decode()
    assert text.count("pyftps_command_duration_seconds_count{") == 1
    assert text.count("pyftps_replies_total{") == 1


def test_fixed_label_sets_start_at_zero(metrics: Metrics) -> None:
    text = generate_latest(metrics.registry).decode()
    assert 'pyftps_logins_total{result="failed"} 0.0' in text
    assert 'pyftps_data_tls_resumptions_total{verdict="other_session"} 0.0' in text
    assert 'pyftps_tls_handshake_failures_total{channel="data"} 0.0' in text
    assert 'pyftps_connections_refused_total{reason="banned"} 0.0' in text


def test_registries_are_private() -> None:
    a, b = Metrics(process_metrics=False), Metrics(process_metrics=False)
    a.login(True)
    assert value(a, "pyftps_logins_total", result="ok") == 1
    assert value(b, "pyftps_logins_total", result="ok") == 0


def test_process_metrics_optional() -> None:
    with_process = generate_latest(Metrics().registry).decode()
    without = generate_latest(Metrics(process_metrics=False).registry).decode()
    assert "python_info" in with_process
    assert "python_info" not in without


def test_exposition_names_follow_conventions(metrics: Metrics) -> None:
    metrics.login(True)
    metrics.transfer("RETR", "ok", bytes_in=0, bytes_out=1, prot="P", seconds=0.1)
    text = generate_latest(metrics.registry).decode()
    for name in (
        "pyftps_logins_total",
        "pyftps_sent_bytes_total",
        "pyftps_transfers_total",
        "pyftps_transfer_duration_seconds_bucket",
        "# TYPE pyftps_command_duration_seconds histogram",
        "# TYPE pyftps_sessions_active gauge",
    ):
        assert name in text
    names = {line.split()[2] for line in text.splitlines() if line.startswith("# TYPE")}
    assert all(name.startswith("pyftps_") for name in names)


def test_thread_safe_counting(metrics: Metrics) -> None:
    def work() -> None:
        for _ in range(1000):
            metrics.session_opened("explicit")
            metrics.transfer("RETR", "ok", bytes_in=0, bytes_out=10, prot="P", seconds=0.0)
            metrics.session_closed("explicit")

    threads = [threading.Thread(target=work) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert value(metrics, "pyftps_sessions_total", listener="explicit") == 8000
    assert value(metrics, "pyftps_sent_bytes_total", kind="RETR") == 80000
    assert value(metrics, "pyftps_sessions_active") == 0


def test_fast_families_expose_what_prometheus_client_would(metrics: Metrics) -> None:
    """The per-session metrics are plain numbers exported at scrape time: same text as the library's."""
    from prometheus_client import CollectorRegistry, Counter, Histogram

    from pyftps.server.metrics import COMMAND_BUCKETS

    reference = CollectorRegistry()
    replies = Counter("pyftps_replies", "Replies sent by reply code.", ["code"], registry=reference)
    durations = Histogram(
        "pyftps_command_duration_seconds",
        "Time from a command's arrival to its final reply (unknown verbs count as OTHER).",
        ["command"],
        registry=reference,
        buckets=COMMAND_BUCKETS,
    )
    for code in (220, 230, 230, 42):
        metrics.reply(code)
        replies.labels(str(code) if code >= 100 else "other").inc()
    for verb, seconds in (("PWD", 0.0), ("PWD", 0.0005), ("RETR", 0.3), ("FROB", 99.0), ("QUIT", -1.0)):
        metrics.command(verb, seconds)
        durations.labels(verb if verb != "FROB" else "OTHER").observe(max(0.0, seconds))

    def family(registry: CollectorRegistry, prefix: str) -> list[str]:
        lines = generate_latest(registry).decode().splitlines()
        # _created holds each series' creation time: present in both, equal only in shape
        return [line.split(" ")[0] if "_created" in line else line for line in lines if prefix in line]

    for prefix in ("pyftps_replies", "pyftps_command_duration_seconds"):
        assert family(metrics.registry, prefix) == family(reference, prefix)


def test_command_replied_counts_as_reply_and_command() -> None:
    one_call, two_calls = Metrics(process_metrics=False), Metrics(process_metrics=False)
    calls = ((230, "PASS", 0.01), (230, "PASS", 0.2), (42, "FROB", 1.0), (257, "PWD", 0.0))
    for code, verb, seconds in calls:
        one_call.command_replied(code, verb, seconds)
        two_calls.reply(code)
        two_calls.command(verb, seconds)
    for name, labels in (
        ("pyftps_replies_total", {"code": "230"}),
        ("pyftps_replies_total", {"code": "other"}),
        ("pyftps_command_duration_seconds_count", {"command": "PASS"}),
        ("pyftps_command_duration_seconds_sum", {"command": "PASS"}),
        ("pyftps_command_duration_seconds_bucket", {"command": "OTHER", "le": "1.0"}),
        ("pyftps_command_duration_seconds_count", {"command": "PWD"}),
    ):
        assert value(one_call, name, **labels) == value(two_calls, name, **labels) > 0
