"""A fake Label Studio (1.23.2's API routes, served from memory) for the tests, the benchmarks and
the simulator's replay (simulate/replay.py). The server is testkit.fake_label_studio.server; webhook
bodies, fast backend settings values and `rq worker` environments are in .testing."""

from testkit.fake_label_studio.server import (
    CLS_CONFIG,
    MULTI_CONFIG,
    NER_CONFIG,
    TEXTS,
    TIME_FORMAT,
    TOKEN,
    FakeLabelStudio,
)
from testkit.fake_label_studio.testing import (
    annotation_updated_webhook,
    annotation_webhook,
    annotations_deleted_webhook,
    backend_values,
    rq_worker_env,
    tasks_created_webhook,
    tasks_deleted_webhook,
)

__all__ = [
    "CLS_CONFIG",
    "MULTI_CONFIG",
    "NER_CONFIG",
    "TEXTS",
    "TIME_FORMAT",
    "TOKEN",
    "FakeLabelStudio",
    "annotation_updated_webhook",
    "annotation_webhook",
    "annotations_deleted_webhook",
    "backend_values",
    "rq_worker_env",
    "tasks_created_webhook",
    "tasks_deleted_webhook",
]
