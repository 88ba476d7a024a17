"""Format-preserving edits of GlideinWMS XML files: the byte scanner, edits, merges, templates and
the command skeleton that factory-xml and frontend-xml share."""
