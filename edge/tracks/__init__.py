"""Person tracking: stable ids across frames from a maintained tracker."""

from edge.tracks.tracker import PersonTracker

__all__ = ["PersonTracker"]
