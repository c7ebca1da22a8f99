"""The one exception type of the data package.

Every user-caused data problem (a bad record, an undecodable image, a box
outside its image, a class id out of range, a missing file) raises
:class:`DatasetError` with a message that names the offending file / image id /
record and says how to fix it. It subclasses ``ValueError`` so callers that
already catch ``ValueError`` keep working.
"""
from __future__ import annotations


class DatasetError(ValueError):
    """A problem in the user's data, with a message naming the item and the fix."""
