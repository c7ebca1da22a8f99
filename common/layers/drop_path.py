"""Drop path / stochastic depth (Huang et al., 2016) on residual branches."""
import keras

from common.layers.recompute import ReplayableSeedGenerator


class DropPath(keras.layers.Layer):
    """Zeroes the whole residual branch of a sample with probability ``rate``.

    Training: ``x * mask / (1 - rate)`` with one Bernoulli(1 - rate) draw per
    sample; inference: identity. Input and output ``[B, ...]``.

    Args:
        rate: probability of dropping the branch (``drop_path_rate``), in [0, 1).
        seed: optional integer seed for reproducible masks.
    """

    def __init__(self, rate=0.0, seed=None, **kwargs):
        super().__init__(**kwargs)
        if not 0.0 <= rate < 1.0:
            raise ValueError(f"DropPath rate must be in [0, 1), got {rate}.")
        self.rate = float(rate)
        self.seed = seed
        # Replayable: a checkpointed block recomputed for its gradients draws the same mask.
        self.seed_generator = ReplayableSeedGenerator(seed) if rate > 0 else None

    def call(self, inputs, training=None):
        if not training or self.rate == 0.0:
            return inputs
        keep = 1.0 - self.rate
        batch = keras.ops.shape(inputs)[0]
        mask_shape = (batch,) + (1,) * (len(inputs.shape) - 1)
        noise = keras.random.uniform(mask_shape, dtype=inputs.dtype, seed=self.seed_generator)
        # 0 or 1 / keep per sample, computed on the [B, 1, ...] mask: the feature map
        # then gets one multiply (and its gradient one), not a divide and a multiply.
        scale = keras.ops.floor(keep + noise) / keras.ops.cast(keep, inputs.dtype)
        return inputs * scale

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self):
        config = super().get_config()
        config.update(rate=self.rate, seed=self.seed)
        return config
