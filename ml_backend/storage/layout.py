"""Where everything lives under MODEL_DIR, the one folder the web process and every worker share.

    embedded_state.json              the embedded mode's retrain state (ml_backend.jobs.embedded_state)
    <project>/versions/<version>/    a saved model + version.json (ml_backend.storage.store)
    <project>/current.json           the promoted version
    <project>/encoders/<name>/       a fine-tune of the background lane taken up (ml_backend.jobs.finetune_lane)
    <project>/scores.sqlite          the file score cache (embedded mode only)
    <project>/embeddings.sqlite      the frozen encoder's vectors of the project's tasks
    <project>/mirror.sqlite          the backend's copy of the project's tasks (ml_backend.labelstudio.mirror)
    <project>/history.jsonl          one record per retrain (ml_backend.storage.history)
    <project>/passes/<id>/           a split scoring pass's model and chunks (ml_backend.jobs.split_pass)

Project ids and version names are checked before they become paths: a name that could point
outside its folder raises InvalidNameError.
"""

from __future__ import annotations

import re
from pathlib import Path

PROJECT_RE = re.compile(r"^[0-9]{1,12}$")
VERSION_RE = re.compile(r"^(?P<project>[0-9]{1,12})-v(?P<number>[0-9]{1,9})-(?P<stamp>[0-9]{8}T[0-9]{6}Z?)$")
ENCODER_RE = re.compile(r"^ft-(?P<labels>[0-9]{1,9})-(?P<stamp>[0-9]{13,16})$")  # labels it was tuned on, ms


class InvalidNameError(ValueError):
    """A project id or version name that could point outside its folder."""


def check_project(project: int | str) -> str:
    text = str(project)
    if not PROJECT_RE.match(text):
        raise InvalidNameError(f"invalid project id {text!r}: expected digits")
    return text


def check_version(version: str) -> str:
    if not isinstance(version, str) or not VERSION_RE.match(version):
        raise InvalidNameError(f"invalid model version {version!r}: expected <project>-v<N>-<timestamp>")
    return version


class ModelDirLayout:
    """The paths of MODEL_DIR (`root`); nothing is created here."""

    def __init__(self, root: str | Path):
        self.root = Path(root)

    def embedded_state_file(self) -> Path:
        return self.root / "embedded_state.json"

    def projects(self) -> list[str]:
        """The projects with a folder, in name order."""
        if not self.root.is_dir():
            return []
        return sorted(p.name for p in self.root.iterdir() if p.is_dir() and PROJECT_RE.match(p.name))

    def project_dir(self, project: int | str) -> Path:
        folder = (self.root / check_project(project)).resolve()
        if folder.parent != self.root.resolve():
            raise InvalidNameError(f"project folder {folder} is outside {self.root}")
        return folder

    def versions_dir(self, project: int | str) -> Path:
        return self.project_dir(project) / "versions"

    def version_dir(self, project: int | str, version: str) -> Path:
        check_version(version)
        if VERSION_RE.match(version)["project"] != check_project(project):
            raise InvalidNameError(f"version {version!r} does not belong to project {project}")
        return self.versions_dir(project) / version

    def encoders_dir(self, project: int | str) -> Path:
        return self.project_dir(project) / "encoders"

    def encoder_dir(self, project: int | str, name: str) -> Path:
        if not isinstance(name, str) or not ENCODER_RE.match(name):
            raise InvalidNameError(f"invalid encoder name {name!r}: expected ft-<labels>-<milliseconds>")
        return self.encoders_dir(project) / name

    def current_file(self, project: int | str) -> Path:
        return self.project_dir(project) / "current.json"

    def scores_file(self, project: int | str) -> Path:
        return self.project_dir(project) / "scores.sqlite"

    def embeddings_file(self, project: int | str) -> Path:
        return self.project_dir(project) / "embeddings.sqlite"

    def mirror_file(self, project: int | str) -> Path:
        return self.project_dir(project) / "mirror.sqlite"

    def history_file(self, project: int | str) -> Path:
        return self.project_dir(project) / "history.jsonl"

    def pass_dir(self, project: int | str, pass_id: str) -> Path:
        return self.project_dir(project) / "passes" / pass_id
