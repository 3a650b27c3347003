"""create_app(settings) -> the Flask app. Routes only translate HTTP; Backend does the work.

For gunicorn: `gunicorn -w 1 --threads 8 -b 0.0.0.0:9090 'ml_backend.app:create_app()'`
(one worker: in the embedded mode the retrain runner lives in that process).
"""

from __future__ import annotations

import logging
from pathlib import Path

from flask import Flask, jsonify, request
from redis.exceptions import RedisError
from werkzeug.exceptions import HTTPException

from ml_backend.backend import Backend
from ml_backend.errors import BadRequest
from ml_backend.settings import Settings, get_settings
from ml_backend.store import InvalidNameError, check_project

log = logging.getLogger(__name__)


def create_app(settings: Settings | None = None, redis=None) -> Flask:
    settings = settings or get_settings()
    app = Flask("ml_backend")
    app.json.sort_keys = False
    backend = Backend(settings, redis=redis)
    if not (settings.label_studio_url and settings.label_studio_api_key):
        log.warning(
            "LABEL_STUDIO_URL / LABEL_STUDIO_API_KEY are not set: /predict works, but retrains cannot read "
            "annotations or publish scores until they are"
        )
    if not Path(settings.acquisition_model).exists():
        log.warning(
            "AL_ACQUISITION_MODEL %r is not a local folder: the first retrain will try to fetch it by id",
            settings.acquisition_model,
        )
    app.extensions["al_backend"] = backend

    def body():
        data = request.get_json(silent=True)
        if data is None and request.get_data():
            raise BadRequest("the request body is not valid JSON")
        return data

    @app.get("/health")
    @app.get("/")
    def health():
        return jsonify(backend.health())

    @app.post("/setup")
    def setup():
        return jsonify(backend.setup(body()))

    @app.post("/predict")
    def predict():
        return jsonify(backend.predict(body()))

    @app.post("/webhook")
    def webhook():
        return jsonify(backend.webhook(body()))

    @app.post("/train")
    def train():  # the legacy training route: treated as START_TRAINING
        data = body() or {}
        project = data.get("project")
        return jsonify(backend.webhook({"action": "START_TRAINING", "project": project}))

    @app.get("/versions")
    def versions():
        project = request.args.get("project")
        return jsonify(backend.versions(check_project(project) if project else None))

    @app.get("/status")
    @app.get("/status/<project>")
    def status(project: str | None = None):
        return jsonify(backend.status(check_project(project) if project else None))

    @app.errorhandler(BadRequest)
    @app.errorhandler(InvalidNameError)
    def bad_request(error):
        return jsonify({"error": str(error)}), 400

    @app.errorhandler(RedisError)
    def redis_down(error):
        log.error("Redis error on %s: %s", request.path, error)
        return jsonify({"error": f"Redis is unavailable ({settings.redis_url}): {error}"}), 503

    @app.errorhandler(HTTPException)
    def http_error(error):
        return jsonify({"error": error.description or error.name}), error.code

    @app.errorhandler(Exception)
    def server_error(error):
        log.exception("unhandled error on %s", request.path)
        return jsonify({"error": f"{type(error).__name__}: {error}"}), 500

    return app
