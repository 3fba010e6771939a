"""Streaming conda/wheel installer: archive readers (sources) and prefix linking (destinations)."""
