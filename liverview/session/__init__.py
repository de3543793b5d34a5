"""The reading session: opening, picks, boxes, analysis jobs, saving and view state, with typed events; no Qt, no torch."""

from liverview.session.dispatch import CallQueue
from liverview.session.reading import JobState, ReadingSession
from liverview.session.view import ViewState

__all__ = ["CallQueue", "JobState", "ReadingSession", "ViewState"]
