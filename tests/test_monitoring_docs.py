"""The example Grafana dashboard and the Prometheus alert rules speak of series /metrics has."""

import json
import re
import shutil
import subprocess
from pathlib import Path

import pytest
from django.conf import settings

from affise_proj import metrics

from .monitoring import TOKEN, scrape

DOCS = Path(settings.BASE_DIR) / "docs" / "monitoring"
# PromQL's own words and the labels the series carry: everything else in an
# expression is a series name.
PROMQL = {"sum", "by", "rate", "max", "min", "histogram_quantile", "or", "and", "absent"}
LABELS = {"method", "state", "reason", "status", "outcome", "partner", "instance", "le", "source"}


def _series_names(expr: str) -> set[str]:
    expr = re.sub(r"\[\d+[smhd]\]", "", expr)
    expr = re.sub(r'"[^"]*"', "", expr)
    words = set(re.findall(r"[a-z_][a-z0-9_]*", expr))
    return words - PROMQL - LABELS


def _exposed(client) -> set[str]:
    names = {name for name, _ in scrape(client)}
    for metric in vars(metrics).values():
        if isinstance(metric, metrics.Counter):
            names.add(f"{metric._name}_total")
        elif isinstance(metric, metrics.Histogram):
            names |= {f"{metric._name}_{part}" for part in ("bucket", "sum", "count")}
    if not settings.CLICK_BUFFER:
        # Without the click buffer (no Redis) its gauges are not exposed.
        names |= {"clicks_buffered", "clicks_buffer_lag_seconds", "clicks_set_aside"}
    return names


def test_every_dashboard_query_names_series_that_metrics_exposes(client, db, settings):
    settings.METRICS_TOKEN = TOKEN
    exposed = _exposed(client)
    dashboard = json.loads((DOCS / "grafana-dashboard.json").read_text())
    queries = [t["expr"] for p in dashboard["panels"] for t in p.get("targets", [])]
    assert len(queries) >= 20
    for expr in queries:
        assert _series_names(expr) <= exposed, expr


def test_every_alert_names_series_that_metrics_exposes(client, db, settings):
    settings.METRICS_TOKEN = TOKEN
    exposed = _exposed(client)
    rules = (DOCS / "alerts.yml").read_text()
    exprs = re.findall(r"expr: \|\n((?:\s{10}.*\n)+)|expr: (.*)", rules)
    assert len(exprs) == 5
    for block, line in exprs:
        assert _series_names(block or line) <= exposed, block or line


@pytest.mark.skipif(not shutil.which("promtool"), reason="needs promtool (Debian: prometheus)")
def test_alert_rules_fire_as_documented():
    done = subprocess.run(
        ["promtool", "test", "rules", "alerts.test.yml"],
        cwd=DOCS,
        capture_output=True,
        text=True,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert "SUCCESS" in done.stdout


def test_flower_is_an_optional_compose_service_on_localhost():
    import yaml

    compose = yaml.safe_load((Path(settings.BASE_DIR) / "docker-compose.yml").read_text())
    flower = compose["services"]["flower"]
    assert flower["profiles"] == ["monitoring"]
    assert all(port.startswith("127.0.0.1:") for port in flower["ports"])
    # Every app container names the metrics token and shares the metrics folder's volume.
    web = compose["services"]["web"]
    assert "METRICS_TOKEN" in web["environment"]
    assert web["environment"]["VAR_DIR"] == "/var/lib/affise"
    assert "spool:/var/lib/affise" in compose["services"]["worker"]["volumes"]
