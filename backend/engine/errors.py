"""Domain errors of the engine. The API maps each to a 4xx answer; none of them is a crash."""


class EngineError(Exception):
    """Base class: a request the engine cannot serve, with a message fit to show a user."""


class ModelLoadError(EngineError):
    """A model directory or hub id that cannot be loaded safely (missing, pickled, unsupported)."""


class TaskError(EngineError):
    """A task, split, file or limit that does not exist or is malformed."""


class InputError(EngineError):
    """An input (text, head, mode) outside what the model allows."""


class PrepareError(EngineError):
    """Building the default model or its data failed (pip, a hash, a broken archive)."""
