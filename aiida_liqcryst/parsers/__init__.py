"""Parsers of the plugin's own calculations."""

from aiida.parsers import Parser


class RetrievedFilesParser(Parser):
    """A parser that reads retrieved text files, a missing one being ``None`` (the caller picks the exit code)."""

    def _read(self, name: str) -> str | None:
        try:
            return self.retrieved.base.repository.get_object_content(name)
        except (FileNotFoundError, OSError):
            return None
