"""NoteBook backend: a self-hostable multi-user notes server."""

__version__ = "0.1.0"
