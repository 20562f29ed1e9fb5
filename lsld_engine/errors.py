"""The engine's error types for bad user input: one base class the command line catches by type.

Every error a user can fix (a missing or corrupt file, a malformed CSV, a wrong option value) is an
:class:`LsldError`; the CLI turns it into one ``PROG: error: ...`` line and exit status 2. Each
subclass also keeps its builtin base (``ValueError``, ``RuntimeError`` or ``FileNotFoundError``) so
existing ``except ValueError`` code keeps working. The subclasses live next to the code that raises
them (``llp.AnnotationError``, ``dataset.FeatureError``, ``writers.PredictionsError``,
``prompts.PromptError``, ``media.MediaError``, ``backends.torch_backend.MissingWeightsError``);
:class:`CheckpointError` is here because both the HAN and the encoder loaders raise it, and
:class:`EngineError` because both the API (backend) and the decode pool (worker start-up) raise it.

This module imports nothing heavy, so ``lsld-engine eval`` can catch these without loading torch.
"""
from __future__ import annotations


class LsldError(Exception):
    """Base of the engine's bad-input errors (the message names the file and the problem)."""


class CheckpointError(LsldError, ValueError):
    """A checkpoint file is unreadable or does not fit the network it is loaded into; the message
    names the file (and the key)."""


class EngineError(LsldError, RuntimeError):
    """A part the engine needs could not be started: the inference backend (runtime missing, files
    of ``engine_dir`` unusable, ...) or the decode worker processes; the message names the cause.
    Raised once for the run, never turned into a video's error record."""


#: Missing / unreadable paths the user named: also reported as one line, not a traceback.
USER_OS_ERRORS: tuple[type[OSError], ...] = (FileNotFoundError, FileExistsError, NotADirectoryError,
                                             IsADirectoryError, PermissionError)


def is_user_error(e: BaseException) -> bool:
    """True for the engine's bad-input errors (:class:`LsldError`) and missing/unreadable paths."""
    return isinstance(e, (LsldError, *USER_OS_ERRORS))
