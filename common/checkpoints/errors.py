"""The checkpoint error (TensorFlow-free, so non-TensorFlow backends can raise and catch it)."""


class CheckpointError(ValueError):
    """A checkpoint that cannot be loaded; the message names the file and the fix."""
