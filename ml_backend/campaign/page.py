"""The campaign page: plain HTML with inline SVG plots, no JavaScript, nothing loaded from elsewhere.

Routes (behind the same basic auth as every route but /health):
    GET /                                   the projects, one link per project
    GET /campaign/<project>                 the project's page
    GET /campaign/<project>.json            the figures the page shows (ml_backend.campaign.figures)
    GET /campaign/<project>/<plot>.svg      a plot as a file: quality, timeline or stability
"""

from __future__ import annotations

import time
from html import escape

from flask import Flask, Response, jsonify

from al_core.data import CLASSIFICATION
from al_core.kinds import kind_of
from al_core.stopping import StoppingRule
from ml_backend.campaign.figures import campaign_figures
from ml_backend.campaign.plots import PLOTS, STEP_COLORS, PlotCache
from ml_backend.history import READ_LIMIT, HistoryCache
from ml_backend.store import InvalidNameError, check_project

RECENT_RETRAINS = 20  # rows of the page's retrain table

STYLE = """
body { font-family: sans-serif; margin: 1.5em auto; max-width: 1100px; color: #222; }
h1 { font-size: 1.5em; } h2 { font-size: 1.15em; margin-top: 1.6em; border-bottom: 1px solid #ddd; }
table { border-collapse: collapse; margin: 0.5em 0; } td, th { padding: 2px 10px; text-align: right; }
th { background: #f3f3f3; } td:first-child, th:first-child { text-align: left; }
.warning { background: #fff4e5; border-left: 4px solid #f58518; padding: 4px 10px; margin: 4px 0; }
.stop { background: #e8f5e9; border-left: 4px solid #54a24b; padding: 6px 10px; font-weight: bold; }
.go { background: #eef3fb; border-left: 4px solid #4c78a8; padding: 6px 10px; }
.rule { color: #555; } .zero { color: #e45756; font-weight: bold; } figure { margin: 0.5em 0; }
svg { max-width: 100%; height: auto; }
"""


class CampaignService:
    def __init__(self, backend):
        self.backend = backend
        settings = backend.settings
        self.rule = StoppingRule(threshold=settings.stop_kappa, window=settings.stop_window)
        self.sample_size = settings.stability_sample
        self.history = HistoryCache(settings.model_dir, READ_LIMIT)
        self.plots = PlotCache()

    def projects(self) -> list[str]:
        return sorted(set(self.backend.store.projects()) | set(self.backend.state.projects()), key=int)

    def figures(self, project: str) -> tuple[tuple, dict]:
        key, records = self.history.records(project)
        status = self.backend.status(project)["projects"][project]
        current = self.backend.store.current(project)
        figures = campaign_figures(
            project, records, status, current, self.rule, self.sample_size, self.history.limit
        )
        return key, figures

    def svg(self, project: str, name: str, key: tuple, figures: dict) -> str:
        return self.plots.get(project, key, name, figures)


def _time(stamp) -> str:
    if not isinstance(stamp, (int, float)):
        return ""
    return time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(stamp))


def _page(title: str, body: str) -> str:
    return (
        f'<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8"><link rel="icon" href="data:,"><title>{escape(title)}</title>'
        f"<style>{STYLE}</style></head><body>{body}</body></html>\n"
    )


def index_html(service: CampaignService) -> str:
    rows = []
    for project in service.projects():
        _, records = service.history.records(project)
        current = service.backend.store.current_version(project) or "untrained"
        rows.append(
            f'<tr><td><a href="/campaign/{project}">project {project}</a></td><td>{escape(current)}</td>'
            f"<td>{len(records)}</td><td>{escape(str(records[-1].get('n_labeled', ''))) if records else ''}</td></tr>"
        )
    table = (
        "<table><tr><th>project</th><th>current version</th><th>retrains recorded</th><th>labeled</th></tr>"
        + "".join(rows)
        + "</table>"
        if rows
        else "<p>No project yet: connect the backend to a Label Studio project and annotate.</p>"
    )
    return _page("Active-learning campaigns", f"<h1>Active-learning campaigns</h1>{table}")


def project_html(service: CampaignService, project: str, key: tuple, figures: dict) -> str:
    parts = [f"<h1>Campaign of project {project}</h1>"]
    shown = figures["retrains_shown"]
    parts.append(
        f"<p>Current version: <b>{escape(str(figures['current_version'] or 'untrained'))}</b>; "
        f"{escape(str(figures['n_labeled'] if figures['n_labeled'] is not None else 0))} labeled tasks, "
        f"{escape(str(figures['n_pool'] if figures['n_pool'] is not None else '?'))} unlabeled; "
        f"{shown} retrain(s) shown"
        + (f" (the last {figures['read_limit']})" if shown >= figures["read_limit"] else "")
        + f'. Figures as JSON: <a href="/campaign/{project}.json">/campaign/{project}.json</a>.</p>'
    )

    warnings = figures["warnings"]
    parts.append("<h2>Needs attention</h2>")
    if warnings:
        parts += [
            f'<div class="warning" data-code="{escape(w["code"])}">{escape(w["message"])}</div>' for w in warnings
        ]
    else:
        parts.append("<p>Nothing.</p>")

    stability = figures["stability"]
    parts.append("<h2>When can we stop?</h2>")
    parts.append(f'<p class="{"stop" if stability["stop"] else "go"}" id="stop-sentence">{escape(stability["sentence"])}</p>')
    parts.append(
        f'<p class="rule">Rule: {escape(stability["rule"])}. Sample: up to {stability["sample_size"]} unlabeled '
        "tasks chosen by a hash of their id, the same for every version (a task leaves it when labeled); "
        "kappa is taken over the tasks both versions predicted (tagging: over all their words); two versions "
        "that predict one and the same label everywhere agree fully (kappa 1).</p>"
    )
    parts.append(_figure(service, project, key, figures, "stability"))

    parts.append("<h2>Is the model learning?</h2>")
    parts.append(_figure(service, project, key, figures, "quality"))
    counts = figures["label_counts"]
    if counts:
        unit = "labeled " + kind_of(figures.get("kind") or CLASSIFICATION).mention_unit
        rows = "".join(
            f'<tr><td>{escape(str(name))}</td><td class="{"zero" if not n else ""}">{n}</td></tr>'
            for name, n in counts.items()
        )
        parts.append(f'<table id="label-counts"><tr><th>class</th><th>{unit}</th></tr>{rows}</table>')
    latest = next((q for q in reversed(figures["quality"]) if q["value"] is not None), None)
    parts.append(
        f"<p>Latest estimate: {escape(str(latest['metric']))} {latest['value']:.3f} "
        f"({escape(str(latest['method'] or ''))}, n = {escape(str(latest['n']))}).</p>"
        if latest
        else "<p>No quality estimate recorded yet (no estimate).</p>"
    )

    parts.append("<h2>Retrain timeline</h2>")
    parts.append(_figure(service, project, key, figures, "timeline"))
    recent = figures["timeline"][-RECENT_RETRAINS:][::-1]
    if recent:
        head = "".join(f"<th>{s} (s)</th>" for s in STEP_COLORS)
        rows = "".join(
            f"<tr><td>{escape(str(r['version']))}</td><td>{_time(r['started_at'])}</td>"
            + "".join(f"<td>{r['steps'].get(s, 0):.1f}</td>" for s in STEP_COLORS)
            + f"<td>{escape(str(r['n_scored']))} / {escape(str(r['n_pool']))}</td></tr>"
            for r in recent
        )
        parts.append(
            f'<table id="retrains"><tr><th>version</th><th>started (UTC)</th>{head}<th>re-scored / pool</th></tr>'
            f"{rows}</table>"
        )
    return _page(f"Campaign of project {project}", "".join(parts))


def _figure(service: CampaignService, project: str, key: tuple, figures: dict, name: str) -> str:
    svg = service.svg(project, name, key, figures)
    return (
        f'<figure id="plot-{name}">{svg}<figcaption><a href="/campaign/{project}/{name}.svg" '
        f'download="project-{project}-{name}.svg">{name}.svg</a></figcaption></figure>'
    )


def register_campaign_routes(app: Flask, backend) -> None:
    service = CampaignService(backend)
    app.extensions["al_campaign"] = service

    def html(text: str) -> Response:
        return Response(text, mimetype="text/html")

    @app.get("/")
    def campaign_index():
        return html(index_html(service))

    @app.get("/campaign/<project>.json")
    def campaign_json(project: str):
        project = check_project(project)
        return jsonify(service.figures(project)[1])

    @app.get("/campaign/<project>")
    def campaign_page(project: str):
        project = check_project(project)
        key, figures = service.figures(project)
        return html(project_html(service, project, key, figures))

    @app.get("/campaign/<project>/<name>.svg")
    def campaign_plot(project: str, name: str):
        project = check_project(project)
        if name not in PLOTS:
            raise InvalidNameError(f"unknown plot {name!r}: expected one of {', '.join(PLOTS)}")
        key, figures = service.figures(project)
        svg = service.svg(project, name, key, figures)
        response = Response('<?xml version="1.0" encoding="utf-8"?>\n' + svg, mimetype="image/svg+xml")
        response.headers["Content-Disposition"] = f'inline; filename="project-{project}-{name}.svg"'
        return response
