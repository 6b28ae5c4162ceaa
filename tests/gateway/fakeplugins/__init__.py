"""Plugins for the loader tests only (the real ones live in ``plugins/``)."""
