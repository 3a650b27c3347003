"""The campaign page's plots, rendered server-side as SVG with matplotlib (Agg, no pyplot state).

Each plot is drawn from the campaign figures (ml_backend.campaign.figures) and cached per project and
history file state, so repeated views of an unchanged history cost a dict lookup.
"""

from __future__ import annotations

import io
import re
import threading
from collections.abc import Callable

import matplotlib
from cachetools import LRUCache

from al_core.data import CLASSIFICATION
from al_core.kinds import kind_of

matplotlib.use("Agg")
from matplotlib import rc_context  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402
from matplotlib.ticker import MaxNLocator  # noqa: E402

STEP_COLORS = {"read": "#4c78a8", "fit": "#f58518", "score": "#54a24b", "publish": "#b279a2", "other": "#bab0ac"}
_PROLOGUE = re.compile(r"^.*?(?=<svg)", re.S)
MAX_BARS = 150  # the timeline draws at most this many retrains (evenly spaced, the last included)
MARKERS_UP_TO = 60  # points drawn with markers up to this many, as a plain line beyond
_render_lock = threading.Lock()  # rc_context changes global settings: one drawing at a time


def _version_number(point: dict, fallback: int) -> int:
    iteration = point.get("iteration")
    return int(iteration) + 1 if isinstance(iteration, int) else fallback


def _marker(n: int) -> str | None:
    return "o" if n <= MARKERS_UP_TO else None


def thin(points: list, limit: int = MAX_BARS) -> list:
    """At most `limit` of `points`, evenly spaced and always holding the last one."""
    if len(points) <= limit:
        return list(points)
    step = -(-len(points) // limit)
    return points[::-1][::step][::-1]


def _integer_x(ax, x: list) -> None:
    """Whole numbers on the x axis (versions, label counts), a margin around a single point."""
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    if x and min(x) == max(x):
        ax.set_xlim(min(x) - 1, max(x) + 1)


def _svg(figure: Figure, salt: str) -> str:
    buffer = io.StringIO()
    # text kept as text (small, selectable); a salt per plot keeps element ids distinct when
    # several plots are inlined in one page
    with rc_context({"svg.fonttype": "none", "svg.hashsalt": salt}):
        figure.savefig(buffer, format="svg", bbox_inches="tight", metadata={"Date": None})
    return _PROLOGUE.sub("", buffer.getvalue(), count=1)


def _empty(ax, text: str) -> None:
    ax.text(0.5, 0.5, text, ha="center", va="center", transform=ax.transAxes, color="#666666")
    ax.set_xticks([])
    ax.set_yticks([])


def quality_svg(figures: dict) -> str:
    figure = Figure(figsize=(10, 3.6))
    left, right = figure.subplots(1, 2, gridspec_kw={"width_ratios": [3, 2]})
    points = [p for p in figures["quality"] if p["value"] is not None and p["n_labeled"] is not None]
    if points:
        metric = points[-1]["metric"] or "quality"
        method = points[-1]["method"]
        left.plot(
            [p["n_labeled"] for p in points], [p["value"] for p in points], marker=_marker(len(points)), color="#4c78a8",
            label=f"on actively chosen tasks ({method})" if method else "on actively chosen tasks",
        )
        audited = [p for p in points if (p.get("audit") or {}).get("value") is not None]
        if audited:
            xs = [p["n_labeled"] for p in audited]
            left.plot(xs, [p["audit"]["value"] for p in audited], marker=_marker(len(audited)), color="#f58518",
                      label="on the audit sample (95% interval)")
            left.fill_between(xs, [p["audit"]["low"] for p in audited], [p["audit"]["high"] for p in audited],
                              color="#f58518", alpha=0.2)
        left.legend(loc="lower right", fontsize="small")
        left.set_ylabel(metric.replace("_", " "))
        left.set_title("quality estimate per version")
        left.set_xlabel("labeled tasks")
        _integer_x(left, [p["n_labeled"] for p in points])
        left.grid(alpha=0.3)
    else:
        left.set_title("quality estimate per version")
        _empty(left, "no estimate yet")
    counts = figures["label_counts"]
    if counts:
        names = list(counts)[::-1]
        values = [counts[n] for n in names]
        bars = right.barh(names, values, color=["#e45756" if v == 0 else "#72b7b2" for v in values])
        right.bar_label(bars, padding=2)
        right.set_xlim(0, max(values + [1]) * 1.2)
        right.xaxis.set_major_locator(MaxNLocator(integer=True))
        unit = kind_of(figures.get("kind") or CLASSIFICATION).mention_unit
        right.set_title(f"labeled {unit} per class")
    else:
        right.set_title("labels per class")
        _empty(right, "no labels yet")
    return _svg(figure, "quality")


def classes_svg(figures: dict) -> str:
    figure = Figure(figsize=(10, 3.6))
    ax = figure.subplots()
    series = figures.get("class_recall") or {}
    unit = kind_of(figures.get("kind") or CLASSIFICATION).mention_unit
    ax.set_title("estimated recall per class against its labels, over versions")
    if not series:
        _empty(ax, "no per-class estimate yet")
        return _svg(figure, "classes")
    x_all = []
    for label, points in series.items():
        x = [p["labels"] for p in points]
        x_all += x
        ax.plot(x, [p["recall"] for p in points], marker=_marker(len(points)), label=label)
    ax.set_xlabel(f"labeled {unit} of the class")
    _integer_x(ax, x_all)
    ax.set_ylabel("estimated recall")
    ax.set_ylim(-0.05, 1.05)
    ax.grid(alpha=0.3)
    ax.legend(loc="center left", bbox_to_anchor=(1.01, 0.5), fontsize="small")
    return _svg(figure, "classes")


def timeline_svg(figures: dict) -> str:
    figure = Figure(figsize=(10, 3.6))
    ax = figure.subplots()
    timeline = thin(figures["timeline"])
    if not timeline:
        ax.set_title("retrain timeline")
        _empty(ax, "no retrain yet")
        return _svg(figure, "timeline")
    x = [_version_number(p, i + 1) for i, p in enumerate(timeline)]
    bottom = [0.0] * len(timeline)
    width = 0.8 * ((x[-1] - x[0]) / (len(x) - 1) if len(x) > 1 and x[-1] > x[0] else 1)
    for step, color in STEP_COLORS.items():
        heights = [p["steps"].get(step, 0.0) for p in timeline]
        ax.bar(x, heights, bottom=bottom, color=color, label=step, width=width)
        bottom = [b + h for b, h in zip(bottom, heights)]
    ax.set_xlabel("version")
    _integer_x(ax, x)
    ax.set_ylabel("seconds")
    shown = "" if len(timeline) == len(figures["timeline"]) else f" ({len(timeline)} of {len(figures['timeline'])} retrains)"
    ax.set_title(f"retrain timeline: seconds per step, tasks re-scored{shown}")
    ax.grid(axis="y", alpha=0.3)
    scored = ax.twinx()
    scored.plot(x, [p["n_scored"] or 0 for p in timeline], color="black", marker=".", linestyle="none", label="tasks re-scored")
    scored.set_ylabel("tasks re-scored")
    scored.set_ylim(bottom=0)
    handles, labels = ax.get_legend_handles_labels()
    more, more_labels = scored.get_legend_handles_labels()
    ax.legend(
        handles + more, labels + more_labels, loc="upper center", bbox_to_anchor=(0.5, -0.16), fontsize="small", ncols=6
    )
    ax.set_ylim(0, max(bottom + [1e-3]) * 1.1)
    return _svg(figure, "timeline")


def stability_svg(figures: dict) -> str:
    stability = figures["stability"]
    figure = Figure(figsize=(10, 3.2))
    ax = figure.subplots()
    points = [(i, p) for i, p in enumerate(stability["points"]) if p["kappa"] is not None]
    ax.set_title("stabilizing predictions: Cohen's kappa with the previous version")
    if not points:
        _empty(ax, "needs two versions with a prediction sample")
        return _svg(figure, "stability")
    x = [_version_number(p, i + 1) for i, p in points]
    kappas = [p["kappa"] for _, p in points]
    window = stability["window"]
    ax.plot(x, kappas, marker=_marker(len(x)), color="#4c78a8", label="kappa vs previous version")
    means = [sum(kappas[i - window + 1 : i + 1]) / window for i in range(window - 1, len(kappas))]
    if means:
        ax.plot(x[window - 1 :], means, color="#f58518", label=f"mean of last {window}")
    ax.axhline(stability["threshold"], color="#e45756", linestyle="--", label=f"stop at {stability['threshold']:g}")
    ax.set_xlabel("version")
    _integer_x(ax, x)
    ax.set_ylabel("kappa")
    ax.set_ylim(min(0.0, min(kappas)) - 0.05, 1.05)
    ax.grid(alpha=0.3)
    ax.legend(loc="lower right", fontsize="small")
    return _svg(figure, "stability")


PLOTS: dict[str, Callable[[dict], str]] = {
    "quality": quality_svg,
    "classes": classes_svg,
    "timeline": timeline_svg,
    "stability": stability_svg,
}


class PlotCache:
    """Rendered SVGs by (project, history key, plot name), least recently used dropped past `size`."""

    def __init__(self, size: int = 96):
        self.size = size
        self._lock = threading.Lock()  # views run in several threads
        self._cache: LRUCache[tuple, str] = LRUCache(maxsize=size)

    def get(self, project: str, key: tuple, name: str, figures: dict) -> str:
        cache_key = (project, key, name)
        with self._lock:
            svg = self._cache.get(cache_key)
        if svg is None:
            with _render_lock:
                svg = PLOTS[name](figures)
            with self._lock:
                self._cache[cache_key] = svg
        return svg
