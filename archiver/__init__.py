"""gws-archiver: archive Genesys Web Services SMS sessions into SQLite and stream their events."""

__version__ = "0.1.0"
