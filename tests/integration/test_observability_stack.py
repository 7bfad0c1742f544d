"""docker/'s Prometheus configuration, alert rules and Grafana dashboard, proven against
a real Prometheus scraping ``pymem exporter`` and a process that uses the client.

Grafana itself cannot run here: the dashboard is checked by its structure and by
running every one of its queries against that Prometheus.
"""

from __future__ import annotations

import contextlib
import json
import re
import shutil
import socket
import subprocess
import threading
import time
import urllib.parse
import urllib.request
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
import yaml
from prometheus_client import CollectorRegistry

from pymem import Limit, Memory, RateLimited, RateLimits, errors
from pymem.ops.worker import Worker
from pymem.telemetry.exporter import DatabaseCollector, database_registry, serve_metrics
from pymem.telemetry.metrics import ClientMetrics

DOCKER = Path(__file__).parents[2] / "docker"
DOCS = Path(__file__).parents[2] / "docs" / "observability.md"
RULES = DOCKER / "prometheus" / "alerts.yml"
DASHBOARD = DOCKER / "grafana" / "dashboards" / "pymem.json"


def _tool(name: str) -> str:
    found = shutil.which(name)
    if found is None:
        pytest.fail(f"{name} is not installed: run `make setup` (Debian's prometheus package)")
    return found


def _promtool(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [_tool("promtool"), *args], capture_output=True, text=True, timeout=120, check=False
    )


def _alerts() -> list[dict[str, Any]]:
    groups = yaml.safe_load(RULES.read_text())["groups"]
    return [rule for group in groups for rule in group["rules"]]


def _dashboard_exprs() -> list[str]:
    dashboard = json.loads(DASHBOARD.read_text())
    return [t["expr"] for p in dashboard["panels"] for t in p.get("targets", [])]


def _signal(expr: str) -> str:
    """The left side of an alert's top-level comparison (what must return data)."""
    depth, quoted = 0, False
    for i, ch in enumerate(expr):
        if ch == '"':
            quoted = not quoted
        elif not quoted and ch in "([{":
            depth += 1
        elif not quoted and ch in ")]}":
            depth -= 1
        elif not quoted and depth == 0 and re.match(r"\s(>|<|==|!=|>=|<=)\s", expr[i:]):
            return expr[:i].strip()
    raise AssertionError(f"no top-level comparison in {expr!r}")


# -- static checks -------------------------------------------------------------


def test_promtool_checks_the_configuration_and_rules_and_runs_their_unit_tests() -> None:
    config = _promtool("check", "config", str(DOCKER / "prometheus" / "prometheus.yml"))
    assert config.returncode == 0, config.stdout + config.stderr
    rules = _promtool("check", "rules", str(RULES))
    assert rules.returncode == 0, rules.stdout + rules.stderr
    tested = _promtool("test", "rules", str(DOCKER / "prometheus" / "alerts_test.yml"))
    assert tested.returncode == 0, tested.stdout + tested.stderr
    # Every alert has a unit test that expects it to fire.
    tests = (DOCKER / "prometheus" / "alerts_test.yml").read_text()
    for rule in _alerts():
        assert f"alertname: {rule['alert']}" in tests, rule["alert"]


def test_every_alert_has_a_runbook_entry() -> None:
    anchors = {
        re.sub(r"[^a-z0-9]", "", line.lstrip("#").strip().lower())
        for line in DOCS.read_text().splitlines()
        if line.startswith("#")
    }
    for rule in _alerts():
        runbook = rule["annotations"]["runbook"]
        assert runbook == f"docs/observability.md#{rule['alert'].lower()}"
        assert rule["alert"].lower() in anchors, f"no runbook heading for {rule['alert']}"


def test_dashboard_structure_and_provisioning() -> None:
    dashboard = json.loads(DASHBOARD.read_text())
    datasource = yaml.safe_load(
        (DOCKER / "grafana" / "provisioning" / "datasources" / "prometheus.yml").read_text()
    )["datasources"][0]
    provider = yaml.safe_load(
        (DOCKER / "grafana" / "provisioning" / "dashboards" / "pymem.yml").read_text()
    )["providers"][0]
    assert provider["options"]["path"] == "/var/lib/grafana/dashboards"
    assert dashboard["uid"] and dashboard["title"] and dashboard["schemaVersion"] >= 30
    ids = [p["id"] for p in dashboard["panels"]]
    assert len(ids) == len(set(ids))
    for panel in dashboard["panels"]:
        grid = panel["gridPos"]
        assert grid["x"] + grid["w"] <= 24 and grid["h"] > 0
        if panel["type"] == "row":
            continue
        assert panel["type"] in {"timeseries", "stat"}
        assert panel["datasource"]["uid"] == datasource["uid"]
        assert panel["targets"], panel["title"]
        for target in panel["targets"]:
            assert target["expr"].strip() and target["refId"]
    compose = yaml.safe_load((DOCKER / "compose.yaml").read_text())["services"]
    assert {"prometheus", "grafana", "worker", "exporter"} <= set(compose)


# -- a real Prometheus ---------------------------------------------------------


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def _get(url: str) -> Any:
    with urllib.request.urlopen(url, timeout=10) as reply:
        return json.loads(reply.read())


def _query(base: str, expr: str) -> list[Any]:
    found = _get(f"{base}/api/v1/query?query={urllib.parse.quote(expr)}")
    assert found["status"] == "success", (expr, found)
    result: list[Any] = found["data"]["result"]
    return result


def _traffic(mem: Memory, stop: threading.Event) -> None:
    """What an application does, errors and refusals included, until stopped."""
    worker = Worker(mem)
    round_ = 0
    while not stop.is_set():
        chat = mem.session(f"s-{round_ % 3}", tenant="acme")
        chat.append("user", f"round {round_}: my parcel arrived broken", tokens=30)
        chat.append("assistant", "sorry, which order was it?", tokens=30)
        for strategy in ("recent", "summary", "hybrid"):
            chat.context(budget=500, strategy=strategy, query="parcel")
            chat.context(budget=500, strategy=strategy, query="parcel")  # a cache hit
        with pytest.raises(errors.InvalidRole):
            chat.append("robot", "beep")
        limited = mem.session("s-limited", tenant="limited")
        with contextlib.suppress(RateLimited):
            limited.append("user", "again", tokens=1)
        worker.drain()
        round_ += 1
        stop.wait(0.2)


@pytest.fixture
def prometheus(tmp_path: Path) -> Iterator[tuple[str, Path]]:
    """A Prometheus on loopback; yields its URL and its configuration file to fill."""
    port = _free_port()
    config = tmp_path / "prometheus.yml"
    config.write_text("global: {}\n")
    proc = subprocess.Popen(
        [
            _tool("prometheus"),
            f"--config.file={config}",
            f"--storage.tsdb.path={tmp_path / 'data'}",
            f"--web.listen-address=127.0.0.1:{port}",
            "--web.enable-lifecycle",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                urllib.request.urlopen(f"{base}/-/ready", timeout=2).close()
                break
            except OSError:
                assert proc.poll() is None, "prometheus exited at start"
                assert time.monotonic() < deadline, "prometheus did not become ready"
                time.sleep(0.2)
        yield base, config
    finally:
        proc.terminate()
        proc.wait(timeout=20)


@pytest.mark.slow
def test_prometheus_scrapes_pymem_and_every_query_returns_data(
    dsn: str, redis_url: str, prometheus: tuple[str, Path]
) -> None:
    base, config = prometheus
    registry = CollectorRegistry()
    limits = RateLimits(per_session=Limit(1, timedelta(minutes=10)))
    mem = Memory.connect(
        dsn,
        max_size=2,
        redis=redis_url,
        metrics=ClientMetrics(registry),
        rate_limits={"limited": limits},
    )
    mem.configure_recall(tenant="acme", summary_every_tokens=50)
    collector = DatabaseCollector(dsn)
    app_server = serve_metrics(registry, _free_port())
    db_server = serve_metrics(database_registry(collector), _free_port())
    stop = threading.Event()
    traffic = threading.Thread(target=_traffic, args=(mem, stop), daemon=True)
    traffic.start()
    try:
        config.write_text(
            yaml.safe_dump(
                {
                    "global": {"scrape_interval": "1s", "evaluation_interval": "1s"},
                    "rule_files": [str(RULES)],
                    "scrape_configs": [
                        {
                            "job_name": "pymem-app",
                            "static_configs": [{"targets": [f"127.0.0.1:{app_server.port}"]}],
                        },
                        {
                            "job_name": "pymem-exporter",
                            "static_configs": [{"targets": [f"127.0.0.1:{db_server.port}"]}],
                        },
                    ],
                }
            )
        )
        urllib.request.urlopen(urllib.request.Request(f"{base}/-/reload", method="POST")).close()

        # Wait until both targets are up and rates have at least two samples.
        exprs = _dashboard_exprs() + [_signal(rule["expr"]) for rule in _alerts()]
        deadline = time.monotonic() + 60
        empty = exprs
        while empty:
            assert time.monotonic() < deadline, f"queries without data: {empty}"
            time.sleep(1)
            empty = [e for e in exprs if not _query(base, e)]
        for rule in _alerts():
            _query(base, rule["expr"])  # the whole rule parses and runs too
        rules = _get(f"{base}/api/v1/rules")["data"]["groups"][0]["rules"]
        assert {r["name"] for r in rules} == {a["alert"] for a in _alerts()}
        assert all(r["health"] == "ok" for r in rules), rules
        targets = _get(f"{base}/api/v1/targets")["data"]["activeTargets"]
        assert {t["labels"]["job"]: t["health"] for t in targets} == {
            "pymem-app": "up",
            "pymem-exporter": "up",
        }
        # Labels stay bounded: no session or user ids anywhere.
        match = urllib.parse.quote('{__name__=~"pymem_.*"}')
        series = _get(f"{base}/api/v1/series?match[]={match}")
        assert "s-limited" not in json.dumps(series) and "s-1" not in json.dumps(series)
    finally:
        stop.set()
        traffic.join(timeout=30)
        app_server.close()
        db_server.close()
        collector.close()
        mem.close()
