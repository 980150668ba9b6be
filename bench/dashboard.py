"""The example Grafana dashboard, drawn from its own JSON against a private Prometheus.

No Grafana server can be installed here, so this draws
docs/monitoring/grafana-dashboard.json the way Grafana lays it out: every
panel at its grid position, every target's PromQL run as written through
Prometheus's query API (the Debian ``prometheus`` binary, on a private
loopback port, scraping the run's /metrics every second with the token),
stat panels coloured by their thresholds. ``make faults`` uses it for the
README's screenshot.
"""

import json
import math
import os
import re
import shutil
import subprocess
import time
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parent.parent
DASHBOARD = ROOT / "docs" / "monitoring" / "grafana-dashboard.json"
PROMETHEUS_PORT = int(os.environ.get("BENCH_PROMETHEUS_PORT", "9190"))
BACKGROUND, PANEL, TEXT, GRID = "#111217", "#181b1f", "#ccccdc", "#2c3235"
COLOURS = ["#73bf69", "#f2cc0c", "#5794f2", "#ff780a", "#f2495c", "#b877d9", "#8ab8ff"]
NAMED = {"green": "#73bf69", "orange": "#ff9830", "red": "#f2495c", "yellow": "#fade2a"}


def available() -> bool:
    return shutil.which("prometheus") is not None


class Prometheus:
    """A Prometheus of the run's own, stopped by ``stop()``."""

    def __init__(self, directory: Path, target: str, token: str) -> None:
        self.dir = directory / "prometheus"
        self.dir.mkdir(parents=True, exist_ok=True)
        (self.dir / "token").write_text(token)
        (self.dir / "prometheus.yml").write_text(
            "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\n"
            "scrape_configs:\n  - job_name: postbacks\n"
            "    authorization:\n      type: Bearer\n"
            f"      credentials_file: {self.dir / 'token'}\n"
            f"    static_configs:\n      - targets: ['{target}']\n"
        )
        self.url = f"http://127.0.0.1:{PROMETHEUS_PORT}"
        self.proc = subprocess.Popen(
            [
                "prometheus",
                f"--config.file={self.dir / 'prometheus.yml'}",
                f"--storage.tsdb.path={self.dir / 'data'}",
                f"--web.listen-address=127.0.0.1:{PROMETHEUS_PORT}",
                "--log.level=warn",
            ],
            stdout=open(self.dir / "log", "wb"),  # noqa: SIM115 - kept open for the process
            stderr=subprocess.STDOUT,
        )
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            try:
                if httpx.get(f"{self.url}/-/ready", timeout=1).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.2)
        self.stop()
        raise RuntimeError("prometheus did not start")

    def query_range(self, expr: str, start: float, end: float, step: float) -> list[dict]:
        answer = httpx.get(
            f"{self.url}/api/v1/query_range",
            params={"query": expr, "start": start, "end": end, "step": step},
            timeout=10,
        )
        answer.raise_for_status()
        return answer.json()["data"]["result"]

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


def _legend(template: str, labels: dict) -> str:
    text = template
    for key, value in labels.items():
        text = text.replace("{{" + key + "}}", value)
    return text.replace("{{", "").replace("}}", "")


def _threshold_colour(defaults: dict, value: float) -> str:
    colour = "green"
    for step in defaults.get("thresholds", {}).get("steps", []):
        if step["value"] is None or value >= step["value"]:
            colour = step["color"]
    return NAMED.get(colour, colour)


def _format(value: float, unit: str) -> str:
    if math.isnan(value):
        return "No data"
    if unit == "s":
        return f"{value:.1f} s" if value < 120 else f"{value / 60:.1f} min"
    if unit == "percentunit":
        return f"{value * 100:.0f}%"
    return f"{value:,.0f}" if abs(value) >= 10 else f"{value:.3g}"


def render(
    prometheus: Prometheus,
    start: float,
    end: float,
    out: Path,
    title: str,
    rate_window: str | None = None,
) -> None:
    """Draw every panel of the dashboard over [start, end] into ``out`` (PNG).

    ``rate_window`` replaces the queries' minute windows (``[1m]``, ``[5m]``,
    ``[10m]``) for a run shorter than them, where a rate over a window longer
    than the data only ramps up.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    dashboard = json.loads(DASHBOARD.read_text())
    panels = dashboard["panels"]
    rows = max(p["gridPos"]["y"] + p["gridPos"]["h"] for p in panels)
    unit_w, unit_h = 0.62, 0.36
    fig = plt.figure(figsize=(24 * unit_w, rows * unit_h + 0.6), facecolor=BACKGROUND)
    fig.suptitle(
        f"{dashboard['title']} — {title}", color=TEXT, x=0.01, ha="left", y=0.998, fontsize=12
    )
    height = rows * unit_h + 0.6
    step = max(1.0, (end - start) / 300)
    for panel in panels:
        pos = panel["gridPos"]
        left = pos["x"] / 24 + 0.004
        bottom = 1 - (pos["y"] + pos["h"]) * unit_h / height - 0.2 / height
        width = pos["w"] / 24 - 0.008
        tall = pos["h"] * unit_h / height - 0.012
        if panel["type"] == "row":
            fig.text(
                left, bottom + tall / 2, panel["title"], color=TEXT, fontsize=11, weight="bold"
            )
            continue
        axis = fig.add_axes((left, bottom, width, tall), facecolor=PANEL)
        axis.set_title(panel["title"], color=TEXT, fontsize=9, loc="left")
        for spine in axis.spines.values():
            spine.set_color(GRID)
        defaults = panel["fieldConfig"]["defaults"]
        unit = defaults.get("unit", "short")
        series = []
        for target in panel["targets"]:
            expr = target["expr"]
            if rate_window:
                expr = re.sub(r"\[\d+m\]", f"[{rate_window}]", expr)
            for result in prometheus.query_range(expr, start, end, step):
                points = [(float(t) - start, float(v)) for t, v in result["values"]]
                series.append((_legend(target["legendFormat"], result["metric"]), points))
        if panel["type"] == "stat":
            last = series[0][1][-1][1] if series and series[0][1] else float("nan")
            colour = PANEL if math.isnan(last) else _threshold_colour(defaults, last)
            axis.set_facecolor(colour)
            axis.text(
                0.5,
                0.45,
                _format(last, unit),
                color="white",
                fontsize=22,
                ha="center",
                va="center",
                transform=axis.transAxes,
                weight="bold",
            )
            axis.set_xticks([])
            axis.set_yticks([])
            continue
        for i, (name, points) in enumerate(series):
            finite = [(t, v) for t, v in points if not math.isnan(v) and not math.isinf(v)]
            if finite:
                axis.plot(
                    *zip(*finite, strict=True),
                    color=COLOURS[i % len(COLOURS)],
                    linewidth=1.2,
                    label=name[:40],
                )
        for step_ in defaults.get("thresholds", {}).get("steps", [])[1:]:
            axis.axhline(
                step_["value"],
                color=NAMED.get(step_["color"], "red"),
                linestyle="--",
                linewidth=0.8,
            )
        if not series:
            axis.text(
                0.5, 0.5, "No data", color=TEXT, ha="center", va="center", transform=axis.transAxes
            )
        axis.tick_params(colors=TEXT, labelsize=7)
        axis.grid(color=GRID, linewidth=0.5)
        if unit == "percentunit":
            axis.yaxis.set_major_formatter(matplotlib.ticker.PercentFormatter(1.0))
        if series:
            axis.legend(
                fontsize=6,
                loc="upper left",
                facecolor=PANEL,
                edgecolor=GRID,
                labelcolor=TEXT,
                ncol=2 if len(series) > 3 else 1,
            )
    fig.text(
        0.99, 0.002, "x axis: seconds from the start of the run", color=TEXT, fontsize=7, ha="right"
    )
    fig.savefig(out, dpi=90, facecolor=BACKGROUND)
    plt.close(fig)
