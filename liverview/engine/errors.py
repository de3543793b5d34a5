"""The engine's exceptions, defined once (no torch, no Qt); each carries the CLI exit code it maps to."""

from __future__ import annotations


class EngineError(Exception):
    """Anything the engine refuses or fails at; the message says why in one line."""

    exit_code = 1


class AnalysisError(EngineError, ValueError):
    """The case cannot be analysed as it is (kept a ValueError: older callers catch that)."""

    exit_code = 2


class MissingPhasesError(AnalysisError):
    """The exam lacks phases and missing phases were not allowed."""

    exit_code = 3


class PhaseMatchError(AnalysisError):
    """The phases share no z range (or are not parallel), so they cannot be matched by position."""

    exit_code = 4


class BundleError(EngineError, ValueError):
    """A bundle that cannot be used; the message names the folder or file and the reason."""

    exit_code = 5


class IntensityError(AnalysisError):
    """The pixels cannot be converted to what the bundle takes (windowed exports without a window)."""

    exit_code = 6


class AutoPickError(AnalysisError):
    """Automatic picking found no lesion to centre the picks on."""

    exit_code = 7


class NoPicksError(AnalysisError):
    """No slice is picked yet: pick three per phase, or let automatic picking do it."""


class AnalysisCancelled(EngineError):
    """The caller's cancel() returned True; the case was left as it was."""

    exit_code = 130


class EngineDied(EngineError):
    """The engine process ended during a job, or could not start."""

    exit_code = 8


class EvidenceError(AnalysisError):
    """A slice the analysis would use holds no image: not decoded, constant, or outside the patient."""

    exit_code = 9


class NotLiverError(AnalysisError):
    """The picked slices show no liver (chest, heart, head, neck or pelvis level, or no body)."""

    exit_code = 10


class LiverDoubtful(AnalysisError):
    """The picked slices may not show a liver; analysed only after a person confirms (allow_doubtful)."""

    exit_code = 11


class GuessedPhasesError(AnalysisError):
    """A phase was assigned on too little evidence (series order alone); analysed only once accepted."""

    exit_code = 12


ERRORS: dict[str, type[EngineError]] = {
    cls.__name__: cls
    for cls in (
        EngineError,
        AnalysisError,
        MissingPhasesError,
        PhaseMatchError,
        BundleError,
        IntensityError,
        AutoPickError,
        NoPicksError,
        AnalysisCancelled,
        EngineDied,
        EvidenceError,
        NotLiverError,
        LiverDoubtful,
        GuessedPhasesError,
    )
}


def error_name(exc: BaseException) -> str:
    """The name a reply carries for `exc`: its nearest class in ERRORS (EngineError for anything else)."""
    for cls in type(exc).__mro__:
        if ERRORS.get(cls.__name__) is cls:
            return cls.__name__
    return EngineError.__name__


def error_from_reply(type_name: str, message: str) -> EngineError:
    """The exception a reply names (a class of this module); an unknown name becomes a plain EngineError."""
    cls = ERRORS.get(type_name, EngineError)
    return cls(message)


def one_line(exc: BaseException) -> str:
    """The first line of an error's message; liverview's own errors already name the file or field,
    anything else keeps its class name in front."""
    lines = str(exc).strip().splitlines()
    msg = lines[0] if lines else ""
    if msg and type(exc).__module__.startswith("liverview"):
        return msg
    return f"{type(exc).__name__}: {msg}" if msg else type(exc).__name__
