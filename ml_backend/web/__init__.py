"""The HTTP side: the services behind Label Studio's ML backend routes (backend), what each
webhook does (events), the answers for /predict (predictor), the API-key check and the 4xx errors.
The routes themselves are in routes.py; ml_backend.app assembles the Flask app."""
