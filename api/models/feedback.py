"""Table models of this feature (filled in by the feature)."""

from __future__ import annotations
