"""The campaign page: plain HTML with inline SVG plots, no JavaScript, nothing loaded from elsewhere.
Rendered from templates/ (Jinja2, autoescaped).

Routes (behind the same basic auth as every route but /health):
    GET /                                   the projects, one link per project
    GET /campaign/<project>                 the project's page
    GET /campaign/<project>.json            the figures the page shows (ml_backend.campaign.figures)
    GET /campaign/<project>/<plot>.svg      a plot as a file: quality, classes, timeline or stability
"""

from __future__ import annotations

import time

from flask import Flask, Response, jsonify
from jinja2 import Environment, PackageLoader, StrictUndefined, select_autoescape
from markupsafe import Markup

from al_core.data import CLASSIFICATION
from al_core.kinds import kind_of
from al_core.stopping import StoppingRule
from ml_backend.campaign.figures import campaign_figures
from ml_backend.campaign.plots import PLOTS, STEP_COLORS, PlotCache
from ml_backend.storage.history import READ_LIMIT, HistoryCache
from ml_backend.storage.layout import InvalidNameError, check_project

RECENT_RETRAINS = 20  # rows of the page's retrain table

# Autoescaping on: whatever a project holds (label names, messages, versions) is shown as text.
_templates = Environment(
    loader=PackageLoader("ml_backend.campaign", "templates"),
    autoescape=select_autoescape(["html"]),
    undefined=StrictUndefined,
    trim_blocks=True,
    lstrip_blocks=True,
    keep_trailing_newline=True,
)


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


_templates.filters["utc"] = _time


def index_html(service: CampaignService) -> str:
    rows = []
    for project in service.projects():
        _, records = service.history.records(project)
        rows.append(
            {
                "project": project,
                "current": service.backend.store.current_version(project) or "untrained",
                "retrains": len(records),
                "n_labeled": records[-1].get("n_labeled", "") if records else "",
            }
        )
    return _templates.get_template("index.html").render(rows=rows)


def project_html(service: CampaignService, project: str, key: tuple, figures: dict) -> str:
    # The plots are inlined as they are: SVG drawn here by matplotlib, which escapes the text it writes.
    plots = {name: Markup(service.svg(project, name, key, figures)) for name in ("stability", "quality", "classes", "timeline")}
    counts = figures["label_counts"]
    kind = kind_of(figures.get("kind") or CLASSIFICATION)
    return _templates.get_template("project.html").render(
        project=project,
        figures=figures,
        plots=plots,
        count_unit="labeled " + kind.mention_unit if counts else "",
        label_noun=kind.label_noun,
        class_table=any(row["recall"] is not None for row in figures["class_quality"]["rows"]),
        latest=next((q for q in reversed(figures["quality"]) if q["value"] is not None), None),
        recent=figures["timeline"][-RECENT_RETRAINS:][::-1],
        steps=list(STEP_COLORS),
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
