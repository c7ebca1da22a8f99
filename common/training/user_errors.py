"""Turns data and out-of-memory errors raised while training or evaluating into
one-line user errors (:class:`~common.config.ConfigError` / dataset errors)."""
import tensorflow as tf

from common.config import ConfigError


class user_errors:  # noqa: N801 - used like a function: ``with user_errors(...):``
    """Context manager: data and memory errors inside become one-line user errors.

    Args:
        config: the run's ExperimentConfig (names the sizes to lower).
        files: the record files being read (named when one is unreadable).
        records: the experiment's record checks (``explain(error, files)``);
            None translates out-of-memory errors only.
        training: True while training, False while evaluating (other advice).
    """

    def __init__(self, config, files, records=None, training=True):
        self.config = config
        self.files = files
        self.records = records
        self.training = training

    def __enter__(self):
        return self

    def __exit__(self, exc_type, error, traceback):
        if error is None or not isinstance(error, tf.errors.OpError):
            return False
        if isinstance(error, tf.errors.ResourceExhaustedError):
            raise ConfigError(out_of_memory_message(self.config, self.training)) from None
        explained = None if self.records is None else self.records.explain(error, self.files)
        if explained is not None:
            raise explained from None
        return False


def out_of_memory_message(config, training=True):
    """What to lower when a train (or evaluation) step runs out of memory."""
    model = config.model
    size = "x".join(str(v) for v in model.image_size)
    if not training:
        batch = config.eval.batch_size
        return (f"Out of memory evaluating {model.name} at {size} with eval.batch_size {batch}: "
                f"lower it (e.g. --override eval.batch_size={max(1, batch // 2)}).")
    train_cfg = config.train
    batch = train_cfg.batch_size
    smaller = max(1, batch // 2)
    return (f"Out of memory training {model.name} at {size} with train.batch_size {batch} per "
            f"replica: lower --batch_size (e.g. {smaller}) and raise --grad_accum_steps (e.g. "
            f"{train_cfg.grad_accum_steps * batch // smaller}) to keep the global batch, or "
            "use --amp.")
