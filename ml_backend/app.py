"""create_app(settings) -> the Flask app: the backend's services (ml_backend.web.backend), its routes
(ml_backend.web.routes) and the campaign page.

For gunicorn: `gunicorn -w 1 --threads 8 -b 0.0.0.0:9090 'ml_backend.app:create_app()'`
(one worker: in the embedded mode the retrain runner lives in that process).
"""

from __future__ import annotations

import logging
from pathlib import Path

from flask import Flask

from ml_backend.campaign.page import register_campaign_routes
from ml_backend.settings import Settings, get_settings
from ml_backend.web.backend import Backend
from ml_backend.web.routes import basic_auth_check, register_error_handlers, register_protocol_routes

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
