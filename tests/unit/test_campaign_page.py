"""The campaign page, its plots and its JSON through Flask's test client, on made-up histories."""

from __future__ import annotations

import base64
import re
import time
from html import unescape

import pytest

from ml_backend.app import create_app
from ml_backend.storage.history import append_record, history_path
from tests.helpers import backend_settings

CLASSES = ["World", "Sports", "Business"]


def record(i: int, kappa: float | None, quality: float | None = None, **extra) -> dict:
    return {
        "version": f"7-v{i + 1}-20260101T0000{i % 60:02d}Z",
        "iteration": i,
        "started_at": 1_767_225_600.0 + 60 * i,
        "finished_at": 1_767_225_600.0 + 60 * i + 5,
        "kind": "classification",
        "classes": CLASSES,
        "n_labeled": 10 + i,
        "n_pool": 1000 - i,
        "n_scored": 100 + i % 7,
        "n_published": 1000 - i,
        "label_counts": {"World": 6 + i, "Sports": 4, "Business": 0},
        "quality": None if quality is None else {"metric": "accuracy", "value": quality, "method": "5-fold cross-validation", "n": 10 + i},
        "timings": {"read_s": 0.5, "prepare_s": 0.1, "fit_s": 2.0, "inference_s": 1.0, "save_s": 0.2,
                    "publish_s": 0.3, "activate_s": 0.1, "publish_rest_s": 0.4, "total_s": 5.0, "stability_s": 0.2},
        "publish": {"ok": True},
        "stability": {"labels": CLASSES, "predictions": {}, "kappa": kappa, "n_compared": 200},
        **extra,
    }


def write_history(settings, project, records):
    path = history_path(settings.model_dir, project)
    for r in records:
        append_record(path, r)
    return path


@pytest.fixture
def app_settings(tmp_path):
    return backend_settings(None, tmp_path / "store", tmp_path / "model")


def test_the_page_shows_plots_label_counts_the_stop_sentence_and_warnings(app_settings):
    records = [record(0, None, 0.5)] + [record(i, k, 0.5 + i / 20) for i, k in enumerate([0.4, 0.8, 0.995, 1.0, 1.0], 1)]
    write_history(app_settings, 7, records)
    client = create_app(app_settings).test_client()
    page = client.get("/campaign/7")
    assert page.status_code == 200 and page.mimetype == "text/html"
    html = page.get_data(as_text=True)
    for name in ("quality", "classes", "timeline", "stability"):
        assert re.search(rf'<figure id="plot-{name}"><svg\b', html), name
    assert html.count("<svg") == 4
    assert "<script" not in html  # no JavaScript
    # nothing loaded from elsewhere: links within the backend or the page, and an empty inline icon
    # (without it the browser asks for /favicon.ico)
    assert re.findall(r"<link[^>]*>", html) == ['<link rel="icon" href="data:,">']
    assert not re.search(r'(src|href)="(?!/|#|data:,")', html)
    counts = re.search(r'<table id="label-counts">(.*?)</table>', html, re.S).group(1)
    assert "<td>World</td><td>11</td>" in counts.replace(' class=""', "")
    assert '<td>Business</td><td class="zero">0</td>' in counts
    sentence = re.search(r'<p class="stop" id="stop-sentence">(.*?)</p>', html).group(1)
    assert sentence.startswith("Stop:") and "0.998" in sentence  # mean of 0.995, 1, 1
    assert "over the last 3 pairs, reaches 0.99" in html  # the rule is stated
    assert 'data-code="class_without_labels"' in html and "no label yet for Business" in html
    assert "accuracy 0.750" in html  # the latest estimate
    # records written before the per-class estimate: no per-class table, an empty recall plot
    assert 'id="class-quality"' not in html and "no per-class estimate yet" in html


def test_not_yet_and_no_estimate(app_settings):
    write_history(app_settings, 7, [record(0, None), record(1, 0.3), record(2, 0.5), record(3, 0.6)])
    client = create_app(app_settings).test_client()
    html = client.get("/campaign/7").get_data(as_text=True)
    assert re.search(r'<p class="go" id="stop-sentence">Keep annotating: the mean kappa of the last 3 comparisons is 0.467', html)
    assert "no estimate" in html
    figures = client.get("/campaign/7.json").json
    assert figures["stability"]["stop"] is False and figures["stability"]["window_mean"] == pytest.approx(1.4 / 3)
    assert [q["value"] for q in figures["quality"]] == [None] * 4
    assert client.get("/campaign/8").status_code == 200  # a project with no history yet
    assert "Not enough versions yet" in client.get("/campaign/8").get_data(as_text=True)


def test_json_figures(app_settings):
    write_history(app_settings, 7, [record(i, 0.9 if i else None, 0.6) for i in range(4)])
    figures = create_app(app_settings).test_client().get("/campaign/7.json").json
    assert figures["project"] == "7" and figures["retrains_shown"] == 4 and figures["read_limit"] == 500
    assert figures["label_counts"] == {"World": 9, "Sports": 4, "Business": 0}
    assert figures["classes"] == CLASSES
    step = figures["timeline"][-1]
    assert step["steps"] == {"read": 0.5, "fit": 2.0, "score": 1.2, "publish": 0.8, "other": 0.7}
    assert step["n_scored"] == 103 and step["version"].startswith("7-v4-")
    assert [p["kappa"] for p in figures["stability"]["points"]] == [None, 0.9, 0.9, 0.9]
    assert figures["stability"]["window_mean"] == pytest.approx(0.9) and figures["stability"]["threshold"] == 0.99
    assert figures["quality"][-1] == {
        "version": step["version"], "iteration": 3, "n_labeled": 13, "metric": "accuracy", "value": 0.6,
        "method": "5-fold cross-validation", "n": 13, "label_counts": figures["label_counts"],
        "figures": {}, "worst": None,
        # a record written before the audit sample: none, and share 0
        "audit": {"value": None, "low": None, "high": None, "accuracy": None, "accuracy_low": None,
                  "accuracy_high": None, "n": 0, "share": 0, "served": None, "labeled": None, "min_labels": 10},
    }
    assert figures["class_recall"] == {}
    assert [r["recall"] for r in figures["class_quality"]["rows"]] == [None] * 3


def per_class_quality(i: int) -> dict:
    """An estimate of version i: World learned, Sports never predicted (recall 0), Business no example."""
    return {
        "metric": "macro_f1", "value": 0.4, "method": "5-fold cross-validation", "n": 20 + i,
        "figures": {"macro_f1": 0.4, "accuracy": 0.8}, "worst": "Sports",
        "per_label": {
            "World": {"precision": 0.75, "recall": 1.0, "f1": 0.8571, "support": 15 + i},
            "Sports": {"precision": 0.0, "recall": 0.0, "f1": 0.0, "support": 5},
            "Business": {"precision": 0.0, "recall": 0.0, "f1": 0.0, "support": 0},
        },
    }


def test_the_page_shows_the_per_class_table_and_each_class_recall(app_settings, monkeypatch):
    records = [record(0, None, 0.5)] + [
        record(i, 0.9, predicted_counts={"World": 990 - i, "Sports": 0, "Business": 0}, n_predicted=990 - i)
        | {"quality": per_class_quality(i)}
        for i in (1, 2)
    ]
    write_history(app_settings, 7, records)
    app = create_app(app_settings)
    client = app.test_client()
    figures = client.get("/campaign/7.json").json
    table = figures["class_quality"]
    assert table["version"] == records[-1]["version"] and table["metric"] == "macro_f1" and table["worst"] == "Sports"
    assert table["rows"][1] == {
        "label": "Sports", "labels": 4, "precision": 0.0, "recall": 0.0, "f1": 0.0, "support": 5, "predicted": 0,
    }
    # recall against label count: the old record (accuracy only) and Business (no example) are left out
    assert figures["class_recall"] == {
        "World": [{"version": r["version"], "iteration": r["iteration"], "labels": 6 + r["iteration"], "recall": 1.0}
                  for r in records[1:]],
        "Sports": [{"version": r["version"], "iteration": r["iteration"], "labels": 4, "recall": 0.0}
                   for r in records[1:]],
    }
    html = client.get("/campaign/7").get_data(as_text=True)
    rows = re.search(r'<table id="class-quality">(.*?)</table>', html, re.S).group(1)
    assert "<th>class</th><th>labeled tasks</th><th>precision</th><th>recall</th><th>F1</th>" in rows
    assert "<td>World</td><td>8</td><td>0.750</td><td>1.000</td><td>0.857</td><td>17</td><td>988</td>" in rows.replace(' class=""', "")
    assert '<tr class="worst"><td>Sports</td><td>4</td><td>0.000</td><td>0.000</td><td>0.000</td><td>5</td><td>0</td>' in rows.replace(' class=""', "")
    assert "macro_f1 0.400, accuracy 0.800; weakest class: Sports" in html
    svg = client.get("/campaign/7/classes.svg").get_data(as_text=True)
    assert "World" in svg and "Sports" in svg and "estimated recall" in svg


def status_adds(monkeypatch, backend, **fields) -> None:
    """The backend's /status answers with `fields` added to the project's entry."""
    real_status = backend.status

    def status(project=None):
        out = real_status(project)
        out["projects"][project].update(fields)
        return out

    monkeypatch.setattr(backend, "status", status)


def test_warnings_from_status_skips_errors_and_failed_publishing(app_settings, monkeypatch):
    write_history(app_settings, 7, [record(0, None), record(1, 1.0, publish={"ok": False, "error": "HTTP 500 from Label Studio"})])
    app = create_app(app_settings)
    backend = app.extensions["al_backend"]
    status_adds(
        monkeypatch,
        backend,
        warnings=[{"code": "labels_changed", "message": "the label config changed <since> v1"}],
        skipped={"empty annotation": 2},
        last_error="ConnectionError: Label Studio is down",
    )
    # a version promoted after the last record, with no retrain running: its publishing did not finish
    monkeypatch.setattr(backend.store, "current", lambda project: {"version": "7-v3-20260101T000300Z", "iteration": 2})
    client = app.test_client()
    codes = [w["code"] for w in client.get("/campaign/7.json").json["warnings"]]
    assert codes == ["labels_changed", "class_without_labels", "skipped", "last_error", "publish_failed", "publish_failed"]
    html = client.get("/campaign/7").get_data(as_text=True)
    assert "the label config changed &lt;since&gt; v1" in html  # verbatim, escaped
    assert "2 annotation(s) skipped: empty annotation" in html
    assert "last error: ConnectionError: Label Studio is down" in html
    assert "failed to publish: HTTP 500 from Label Studio" in html
    assert "7-v3-20260101T000300Z was saved but its retrain did not finish publishing" in html


def test_what_a_project_holds_is_shown_as_text(app_settings, monkeypatch):
    label = "<script>alert(1)</script>"
    write_history(
        app_settings,
        7,
        [record(0, None, 0.5, version="7-v1-<i>", classes=[*CLASSES, label], label_counts={"World": 6, label: 2})],
    )
    app = create_app(app_settings)
    status_adds(monkeypatch, app.extensions["al_backend"], warnings=[{"code": 'a"b', "message": "see <b>& 'here'"}])
    html = app.test_client().get("/campaign/7").get_data(as_text=True)
    assert "<script" not in html and "<b>&" not in html and "<i>" not in html
    assert "<td>&lt;script&gt;alert(1)&lt;/script&gt;</td><td>2</td>" in html.replace(' class=""', "")
    assert "see &lt;b&gt;&amp; " in html and "<td>7-v1-&lt;i&gt;</td>" in html
    codes = re.findall(r'<div class="warning" data-code="([^"]*)">', html)
    assert [unescape(c) for c in codes] == ['a"b', "class_without_labels"]
    assert html.count("<svg") == 4  # the plots are inlined as SVG, not as text


def test_the_index_lists_the_projects(app_settings):
    write_history(app_settings, 7, [record(0, None)])
    write_history(app_settings, 12, [record(0, None), record(1, 1.0)])
    html = create_app(app_settings).test_client().get("/").get_data(as_text=True)
    assert '<a href="/campaign/7">project 7</a>' in html and '<a href="/campaign/12">project 12</a>' in html
    assert html.index("project 7<") < html.index("project 12<")  # numeric order


def test_plots_as_files(app_settings):
    write_history(app_settings, 7, [record(i, 1.0 if i else None, 0.7) for i in range(3)])
    client = create_app(app_settings).test_client()
    for name in ("quality", "classes", "timeline", "stability"):
        reply = client.get(f"/campaign/7/{name}.svg")
        assert reply.status_code == 200 and reply.mimetype == "image/svg+xml"
        text = reply.get_data(as_text=True)
        assert text.startswith("<?xml") and "<svg" in text and text.rstrip().endswith("</svg>")
        assert f'filename="project-7-{name}.svg"' in reply.headers["Content-Disposition"]
    assert "labeled tasks per class" in client.get("/campaign/7/quality.svg").get_data(as_text=True)
    assert client.get("/campaign/7/other.svg").status_code == 400
    assert client.get("/campaign/abc").status_code == 400
    assert client.get("/campaign/..%2F1.json").status_code in (400, 404)


def test_hundreds_of_versions_cost_a_bounded_read_and_one_drawing(app_settings, monkeypatch):
    write_history(app_settings, 7, [record(i, min(1.0, 0.5 + i / 400), 0.5 + i / 2000) for i in range(800)])
    app = create_app(app_settings)
    client = app.test_client()
    figures = client.get("/campaign/7.json").json
    assert figures["retrains_shown"] == 500 and figures["timeline"][0]["iteration"] == 300
    import ml_backend.campaign.plots as plots

    drawn = []
    for name, draw in list(plots.PLOTS.items()):
        monkeypatch.setitem(plots.PLOTS, name, lambda f, draw=draw, name=name: drawn.append(name) or draw(f))
    started = time.perf_counter()
    first = client.get("/campaign/7")
    assert first.status_code == 200 and len(first.data) < 400_000
    assert "(the last 500)" in first.get_data(as_text=True)
    assert sorted(drawn) == ["classes", "quality", "stability", "timeline"]
    for _ in range(5):
        assert client.get("/campaign/7").data == first.data
    assert client.get("/campaign/7/timeline.svg").status_code == 200
    assert len(drawn) == 4  # unchanged history: no drawing again
    assert time.perf_counter() - started < 30
    write_history(app_settings, 7, [record(800, 1.0, 0.9)])
    client.get("/campaign/7")
    assert len(drawn) == 8  # a new record: drawn again



def test_the_plot_cache_keeps_the_most_recently_used(monkeypatch):
    import ml_backend.campaign.plots as plots

    drawn = []
    monkeypatch.setitem(plots.PLOTS, "quality", lambda f: drawn.append(f["n"]) or f"<svg>{f['n']}</svg>")
    cache = plots.PlotCache(size=2)
    for n in (1, 2, 1, 3):  # 3 drops 2, the least recently used
        assert cache.get("7", (n, 0), "quality", {"n": n}) == f"<svg>{n}</svg>"
    cache.get("7", (1, 0), "quality", {"n": 1})
    cache.get("7", (2, 0), "quality", {"n": 2})
    assert drawn == [1, 2, 3, 2]

def basic(user, password):
    return {"Authorization": "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()}


@pytest.mark.parametrize("path", ["/", "/campaign/7", "/campaign/7.json", "/campaign/7/quality.svg"])
def test_behind_basic_auth(tmp_path, path):
    settings = backend_settings(None, tmp_path / "s", tmp_path / "m", basic_auth_user="u", basic_auth_password="p")
    client = create_app(settings).test_client()
    assert client.get(path).status_code == 401
    assert client.get(path, headers=basic("u", "p")).status_code == 200
    assert client.get("/health").status_code == 200


def test_a_warning_that_status_already_gives_is_not_repeated(app_settings, monkeypatch):
    write_history(app_settings, 8, [record(0, None)])
    app = create_app(app_settings)
    status_adds(
        monkeypatch,
        app.extensions["al_backend"],
        warnings=[
            {"code": "missing_classes", "message": "no label yet for Business"},
            {"code": "skipped_annotations", "message": "2 annotations skipped"},
        ],
        skipped={"unknown_label": 2},
    )
    codes = [w["code"] for w in app.test_client().get("/campaign/8.json").json["warnings"]]
    assert codes == ["missing_classes", "skipped_annotations"]


AUDIT = {"metric": "macro_f1", "value": 0.61, "low": 0.48, "high": 0.74, "accuracy": 0.65, "accuracy_low": 0.5,
         "accuracy_high": 0.77, "n": 40, "share": 0.04, "confidence": 0.95}


def quality_with_audit(value: float, audit: dict) -> dict:
    return {"metric": "macro_f1", "value": value, "method": "5-fold cross-validation", "n": 300, "audit": audit}


def test_the_page_shows_the_audit_estimate_beside_the_one_on_actively_chosen_tasks(app_settings):
    audited = record(1, 0.9, audit={"share": 0.04, "served": 8, "labeled": 40})
    audited["quality"] = quality_with_audit(0.8, AUDIT)
    write_history(app_settings, 7, [record(0, None, 0.5), audited])
    client = create_app(app_settings).test_client()
    html = unescape(client.get("/campaign/7").get_data(as_text=True))
    active = re.search(r'<p id="estimate-active">(.*?)</p>', html, re.S).group(1)
    audit = re.search(r'<p id="estimate-audit">(.*?)</p>', html, re.S).group(1)
    assert "on actively chosen tasks" in active and "0.800" in active
    assert "macro_f1 0.610" in audit and "0.480 to 0.740" in audit and "0.500 to 0.770" in audit
    assert "n = 40" in audit and "Audit tasks in the current query window: 8" in audit
    assert client.get("/campaign/7/quality.svg").status_code == 200
    assert "no quality estimate is read" in html  # the stopping rule says what it reads


def test_too_few_audit_labels_and_a_record_from_before_the_audit_say_so(app_settings):
    few = record(1, 0.9, audit={"share": 0.04, "served": 8, "labeled": 3})
    few["quality"] = quality_with_audit(0.8, dict(AUDIT, value=None, low=None, high=None, accuracy=None, n=3))
    write_history(app_settings, 7, [record(0, None, 0.5), few])
    write_history(app_settings, 8, [record(0, None, 0.5), record(1, 0.9, 0.6)])  # written before the audit
    client = create_app(app_settings).test_client()
    few_html = unescape(client.get("/campaign/7").get_data(as_text=True))
    assert "No audit estimate yet: 3 labeled audit tasks, 10 needed" in few_html
    old_html = unescape(client.get("/campaign/8").get_data(as_text=True))
    assert client.get("/campaign/8/quality.svg").status_code == 200
    assert "the estimate is on actively chosen tasks only" in old_html
