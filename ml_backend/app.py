"""create_app(settings) -> the Flask app. Routes only translate HTTP; Backend does the work.

For gunicorn: `gunicorn -w 1 --threads 8 -b 0.0.0.0:9090 'ml_backend.app:create_app()'`
(one worker: in the embedded mode the retrain runner lives in that process).
"""

from __future__ import annotations

import hmac
import json
import logging
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

from flask import Flask, jsonify, request
from redis.exceptions import RedisError
from werkzeug.exceptions import HTTPException

from al_core.exceptions import ModelLoadError
from ml_backend.backend import Backend
from ml_backend.campaign.page import register_campaign_routes
from ml_backend.errors import BadRequest
from ml_backend.settings import Settings, get_settings
from ml_backend.store import InvalidNameError, check_project

log = logging.getLogger(__name__)


def create_app(settings: Settings | None = None, redis=None) -> Flask:
    settings = settings or get_settings()
    app = Flask("ml_backend")
    app.json.sort_keys = False
    app.config["MAX_CONTENT_LENGTH"] = int(settings.max_request_mb * 2**20)
    backend = Backend(settings, redis=redis)
    app.extensions["al_backend"] = backend
    warn_about_missing_parts(settings)
    if settings.basic_auth_user and settings.basic_auth_password:
        app.before_request(basic_auth_check(settings.basic_auth_user, settings.basic_auth_password))
    register_protocol_routes(app, backend)
    register_campaign_routes(app, backend)  # GET / and /campaign/...: the campaign page
    register_error_handlers(app, settings)
    return app


def warn_about_missing_parts(settings: Settings) -> None:
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


def body():
    """The request's JSON, whatever its Content-Type (None for an empty body)."""
    raw = request.get_data()
    if not raw.strip():
        return None
    try:
        return json.loads(raw)
    except (ValueError, RecursionError) as error:  # RecursionError: absurdly deep nesting
        raise BadRequest(f"the request body is not valid JSON: {str(error)[:200]}") from None


def register_protocol_routes(app: Flask, backend: Backend) -> None:
    """Label Studio's ML backend routes, and /versions and /status."""

    @app.get("/health")
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
        data = body()
        if not isinstance(data, dict):
            raise BadRequest("/train expects a JSON object with 'project'")
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


def register_error_handlers(app: Flask, settings: Settings) -> None:
    """Every error as a JSON {"error": message} with its status: 400, 413, 503, 500."""

    @app.errorhandler(BadRequest)
    @app.errorhandler(InvalidNameError)
    def bad_request(error):
        return jsonify({"error": str(error)}), 400

    @app.errorhandler(RedisError)
    def redis_down(error):
        log.error("Redis error on %s: %s", request.path, error)
        return jsonify(
            {"error": f"Redis is unavailable ({without_password(settings.redis_url)}): {error}"}
        ), 503

    @app.errorhandler(ModelLoadError)
    def model_unavailable(error):
        log.error("cannot load a model on %s: %s", request.path, error)
        return jsonify({"error": f"the promoted model version cannot be loaded: {error}"}), 503

    @app.errorhandler(413)
    def too_large(error):
        return jsonify(
            {"error": f"the request body is larger than {settings.max_request_mb:g} MB (AL_MAX_REQUEST_MB)"}
        ), 413

    @app.errorhandler(HTTPException)
    def http_error(error):
        return jsonify({"error": error.description or error.name}), error.code

    @app.errorhandler(Exception)
    def server_error(error):
        log.exception("unhandled error on %s", request.path)
        message = f"{type(error).__name__}: {error}"
        if settings.label_studio_api_key:
            message = message.replace(settings.label_studio_api_key, "***")
        return jsonify({"error": message}), 500


def basic_auth_check(user: str, password: str):
    """A before_request hook: HTTP basic auth on every route but /health."""
    expected = (user.encode(), password.encode())

    def check():
        if request.path == "/health":
            return None
        auth = request.authorization
        given = (
            ((auth.username or "").encode(), (auth.password or "").encode())
            if auth is not None and auth.type == "basic"
            else (b"", b"")
        )
        # compare both fields in constant time, whatever the first comparison says
        user_ok = hmac.compare_digest(given[0], expected[0])
        password_ok = hmac.compare_digest(given[1], expected[1])
        if user_ok and password_ok:
            return None
        response = jsonify({"error": "authentication required: HTTP basic auth (AL_BASIC_AUTH_USER)"})
        response.status_code = 401
        response.headers["WWW-Authenticate"] = 'Basic realm="ml-backend"'
        return response

    return check


def without_password(url: str | None) -> str:
    """A URL fit for messages: redis://:secret@host/0 -> redis://***@host/0."""
    parts = urlsplit(url or "")
    if parts.password is None and parts.username is None:
        return url or ""
    return urlunsplit(parts._replace(netloc="***@" + parts.netloc.rsplit("@", 1)[1]))
