"""Where the annotated project comes from: a running Label Studio (through its SDK) or an export file.

Both give the same thing: the label config and the tasks as in a Label Studio JSON export
(every task, with its annotations), turned into a Dataset by the engine's ls_format.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from al_core.data import Dataset
from al_core.exceptions import ALError, DataFormatError
from al_core.ls_format import LabelConfig, examples_from_export, parse_label_config, read_ls_export


@dataclass
class AnnotatedProject:
    config: LabelConfig
    dataset: Dataset
    origin: str  # where it was read from, for the report
    label_config_xml: str | None = None


class SourceError(ALError):
    """The project cannot be read (server unreachable, refused, no such project, bad file)."""


def _check_annotated(dataset: Dataset, origin: str) -> None:
    if not dataset.examples:
        raise ALError(f"{origin}: the project has no tasks")
    if not dataset.labeled():
        raise ALError(f"{origin}: no task has an annotation; annotate some tasks first")


def read_label_config_file(path: str | Path) -> str:
    try:
        return Path(path).read_text(encoding="utf-8")
    except OSError as error:
        raise SourceError(f"cannot read the label config {path}: {error.strerror or error}") from error


def from_export_file(path: str | Path, label_config_xml: str | None = None) -> AnnotatedProject:
    """A Label Studio JSON export (export with "all tasks", so the unlabeled ones are in it too).

    Without a label config, the kind and the labels are guessed from the annotations.
    """
    config = parse_label_config(label_config_xml) if label_config_xml is not None else None
    dataset = read_ls_export(path, config)
    if config is None:
        config = _config_from_dataset_guess(path)
    origin = f"export file {path}"
    _check_annotated(dataset, origin)
    return AnnotatedProject(config, dataset, origin, label_config_xml)


def _config_from_dataset_guess(path: str | Path) -> LabelConfig:
    # read_ls_export guessed it from the annotations; repeat the guess to keep the config itself
    from al_core.ls_format import infer_config

    tasks = json.loads(Path(path).read_text(encoding="utf-8-sig"))
    return infer_config(tasks, Path(path))


def from_label_studio(url: str, api_key: str, project_id: int, progress: bool = True) -> AnnotatedProject:
    """Every task of a project, with its annotations, through label-studio-sdk's JSON export."""
    from label_studio_sdk import LabelStudio
    from label_studio_sdk.core.api_error import ApiError
    from tqdm.auto import tqdm

    origin = f"Label Studio {url} project {project_id}"
    client = LabelStudio(base_url=url, api_key=api_key)
    try:
        project = client.projects.get(id=project_id)
        label_config_xml = project.label_config
        chunks = []
        with tqdm(desc="downloading tasks", unit="B", unit_scale=True, disable=not progress) as bar:
            for chunk in client.projects.exports.download_sync(
                project_id, export_type="JSON", download_all_tasks=True
            ):
                chunks.append(chunk)
                bar.update(len(chunk))
    except ApiError as error:
        detail = error.body.get("detail") if isinstance(error.body, dict) else error.body
        raise SourceError(f"{origin}: Label Studio answered HTTP {error.status_code}: {detail}") from error
    except Exception as error:  # httpx connection errors and the like: say what failed, not a traceback
        if isinstance(error, ALError):
            raise
        raise SourceError(f"{origin}: cannot reach Label Studio: {error}") from error
    try:
        tasks = json.loads(b"".join(chunks).decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as error:
        raise SourceError(f"{origin}: the export is not JSON: {error}") from error
    if not isinstance(tasks, list):
        raise DataFormatError(f"{origin}: the export is not a list of tasks")
    if not label_config_xml:
        raise SourceError(f"{origin}: the project has no label config")
    config = parse_label_config(label_config_xml)
    dataset = examples_from_export(tasks, config)
    _check_annotated(dataset, origin)
    return AnnotatedProject(config, dataset, origin, label_config_xml)
