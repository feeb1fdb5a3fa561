"""Exception types raised by sam-i2v.

Every error the library raises on bad input derives from :class:`I2VError`, so callers can
catch one type. Each subclass also derives from the built-in type a Python user would expect
(``ValueError`` for bad arguments, ``FileNotFoundError`` for missing files, ...), so existing
``except ValueError`` code keeps working.
"""

from __future__ import annotations


class I2VError(Exception):
    """Base class of all sam-i2v errors."""


class ConfigError(I2VError, ValueError):
    """A configuration file or value is invalid (unknown key, wrong type, out of range)."""


class CheckpointError(I2VError, ValueError):
    """A checkpoint file is missing, corrupt, unsafe, or does not match the model."""


class PromptError(I2VError, ValueError):
    """A prompt (points, labels, box, mask) is malformed or does not fit the video."""


class VideoError(I2VError, ValueError):
    """A video source is empty, unreadable, or inconsistent (e.g. frames of different sizes)."""


class VideoNotFoundError(VideoError, FileNotFoundError):
    """A video path does not exist."""


class FrameIndexError(I2VError, IndexError):
    """A frame index is outside the video."""


class UnknownObjectError(I2VError, KeyError, RuntimeError):
    """An object id is not tracked in this inference state.

    Also a ``RuntimeError``, which is what SAM 2 raises for ``remove_object(strict=True)``.
    """

    def __str__(self) -> str:  # KeyError quotes its message; keep it readable
        return str(self.args[0]) if self.args else ""


class StateError(I2VError, RuntimeError):
    """A method was called in the wrong order (e.g. propagate before any prompt)."""


class DatasetError(I2VError, ValueError):
    """A dataset folder or annotation file is missing, corrupt, or in an unexpected layout."""


class StandInSamWarning(UserWarning):
    """The bundled tiny SAM is in use where a real SAM checkpoint is expected.

    The tiny SAM is trained on the bundled synthetic videos only (J&F about 0.1 on real
    photos): it makes the quickstart and the tests run on a CPU, nothing more.
    """
