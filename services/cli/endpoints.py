"""Moved to ``services/endpoints.py`` (ADR 0020); these names stay for existing importers."""

from services.endpoints import (
    FILE_NAME,
    StackEndpoints,
    StackNotFound,
    add_entries,
    find_stack,
    read_endpoints_file,
    remove_entries,
    write_endpoints,
)

__all__ = [
    "FILE_NAME",
    "StackEndpoints",
    "StackNotFound",
    "add_entries",
    "find_stack",
    "read_endpoints_file",
    "remove_entries",
    "write_endpoints",
]
