"""Named errors raised by the engine, so callers can turn them into clear messages."""


class ALError(Exception):
    """Base class of every error the engine raises on purpose."""


class DataFormatError(ALError):
    """A data file or record is malformed. The message names the file and line when known."""

    def __init__(self, message: str, path: str | None = None, line: int | None = None):
        where = ""
        if path is not None:
            where = f"{path}:{line}: " if line is not None else f"{path}: "
        super().__init__(f"{where}{message}")
        self.path = path
        self.line = line


class EmptyPoolError(ALError):
    """A query was asked of an empty pool."""


class UnknownStrategyError(ALError):
    """No query strategy is registered under that name."""


class ModelLoadError(ALError):
    """A model could not be loaded from the given id or folder."""


class NotFittedError(ALError):
    """A model was used before fit() or load()."""


class UnsupportedConfigError(ALError):
    """A Label Studio labeling config uses tags or layouts the engine cannot learn from."""
