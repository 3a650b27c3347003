"""What the tests, the benchmarks and the simulator's replay run the backend against.

- testkit.fake_label_studio: an in-process Label Studio 1.23.2 (its API routes, served from memory);
- testkit.real_label_studio: the real Label Studio 1.23.2, installed in a virtualenv of its own and
  started with the docker-compose.yml service's command; testkit.ls_api talks to it;
- testkit.processes: Redis, `ml-backend` and `rq worker` as local processes, as compose runs them;
- testkit.tiny_models: random-weight transformers written from a config, for fast runs;
- testkit.gold: small real task sets with their gold labels, from the shared datasets.

Nothing here imports the backend (ml_backend): the callers build its settings themselves.
"""
