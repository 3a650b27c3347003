"""The active-learning engine: data, models, query strategies, UPS, PLASM, one AL round.

Framework-free on purpose: nothing here imports flask, rq, redis or the Label Studio SDK,
so the backend, the exporter and the simulator can all stand on it.
"""
