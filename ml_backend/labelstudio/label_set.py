"""Which label set a model was trained for, and whether a prediction fits the project's config.

A model version is bound to its label set: the kind, the control tag (its from_name and the
object it labels), the task field and the labels in config order. A label-config change that
alters any of these (a label added, removed or renamed, another from_name) makes a new model:
the scores cached for the old one are dropped, the next retrain scores the whole pool, and no
region of the old label set is published under it. Layout-only edits keep the model.
"""

from __future__ import annotations

from typing import Any

from al_core.exceptions import UnsupportedConfigError
from al_core.ls_format import LabelConfig, model_labels, parse_label_config


def label_set(config: LabelConfig) -> dict[str, Any]:
    return {
        "kind": config.kind,
        "control": config.tag,
        "from_name": config.from_name,
        "to_name": config.to_name,
        "value_key": config.value_key,
        "labels": list(config.labels),
    }


def version_label_set(meta: dict) -> dict[str, Any] | None:
    """The label set a saved version was trained for (from its stored label config)."""
    text = meta.get("label_config")
    if not isinstance(text, str):
        return None
    try:
        return label_set(parse_label_config(text))
    except Exception:  # noqa: BLE001 - an unreadable stored config counts as another label set
        return None


def label_set_changed(meta: dict | None, config: LabelConfig) -> bool:
    """True when the version described by `meta` was trained for another label set than `config`."""
    if meta is None:
        return False
    if not isinstance(meta.get("label_config"), str):  # a meta without its config: kind and labels
        return meta.get("kind") != config.kind or meta.get("labels") != model_labels(config)
    return version_label_set(meta) != label_set(config)


def promoted_label_set_changed(store, project: int | str, config: LabelConfig) -> bool:
    """True when the project's promoted version (in `store`, a VersionStore) was trained for
    another label set than `config`; False before the first version."""
    current = store.current_version(project)
    return current is not None and label_set_changed(store.meta(project, current), config)


def region_problem(result: Any, config: LabelConfig) -> str | None:
    """Why prediction regions do not fit `config` (what Label Studio would refuse), or None."""
    if not isinstance(result, list):
        return "the result is not a list of regions"
    for region in result:
        if not isinstance(region, dict):
            return "a region is not an object"
        if region.get("from_name") != config.from_name or region.get("to_name") != config.to_name:
            return (
                f"region of control {region.get('from_name')!r} -> {region.get('to_name')!r}; the config has "
                f"{config.from_name!r} -> {config.to_name!r}"
            )
        value = region.get("value") if isinstance(region.get("value"), dict) else {}
        values = value.get(config.task_kind.result_key) or []
        unknown = [v for v in values if v not in config.labels]
        if not values or unknown:
            return f"label {unknown[0] if unknown else None!r} is not in the label config ({', '.join(config.labels)})"
    return None


def text_objects(xml: str) -> list[str]:
    """Names of the <Text> objects of a (parseable) label config."""
    import xml.etree.ElementTree as ET

    return [el.get("name") or "?" for el in ET.fromstring(xml).iter("Text") if "value" in el.attrib]


def check_config(label_config: str):
    """Parse a label config and refuse what the acquisition model cannot learn."""
    config = parse_label_config(label_config)
    texts = text_objects(label_config)
    if len(texts) > 1:
        raise UnsupportedConfigError(
            f"several <Text> objects ({', '.join(texts)}); the backend reads one text per task, the one "
            f"<{config.tag} toName={config.to_name!r}> labels: remove the others from the config"
        )
    return config
