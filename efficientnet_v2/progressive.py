"""Stage-wise progressive learning (EfficientNetV2, Tan & Le 2021, §4.2, Algorithm 1).

Training is split into ``n_stages`` equal spans of epochs. Stage ``i`` of ``M``
uses ``value_i = base + (final - base) * i / (M - 1)`` for the image size and
every regularization strength (RandAugment magnitude, mixup and cutmix alpha,
dropout): small images with weak regularization first, the final size with the
full strength last. With ``M = 1`` the final values are used and the base values
have no effect.
"""
import dataclasses


@dataclasses.dataclass(frozen=True)
class Stage:
    """One training stage: epochs ``[start_epoch, end_epoch)`` and its settings."""

    index: int
    start_epoch: int
    end_epoch: int
    image_size: tuple
    randaug_magnitude: float
    mixup_alpha: float
    cutmix_alpha: float
    dropout_rate: float


def _interpolate(base, final, ratio):
    return base + (final - base) * ratio


def stage_schedule(num_epochs, n_stages, image_size, base_image_size, randaug_magnitude=0.0,
                   base_randaug_magnitude=0.0, mixup_alpha=0.0, base_mixup=0.0, cutmix_alpha=0.0,
                   base_cutmix=0.0, dropout_rate=0.0, base_dropout=0.0):
    """The stages of a run.

    Args:
        num_epochs: total epochs (each stage gets ``num_epochs / n_stages``, rounded down
            at the boundaries; the last stage ends at ``num_epochs``).
        n_stages: number of stages ``M`` (≥ 1, ≤ ``num_epochs``).
        image_size: final (height, width); ``base_image_size`` the first stage's.
        randaug_magnitude, mixup_alpha, cutmix_alpha, dropout_rate: final strengths;
            ``base_*`` the first stage's.

    Returns:
        A list of :class:`Stage`, in order.

    Raises:
        ValueError: for ``n_stages < 1`` or more stages than epochs.
    """
    if n_stages < 1:
        raise ValueError(f"n_stages must be >= 1, got {n_stages}.")
    if n_stages > num_epochs:
        raise ValueError(f"n_stages ({n_stages}) cannot exceed num_epochs ({num_epochs}).")
    stages = []
    for i in range(n_stages):
        ratio = 1.0 if n_stages == 1 else i / (n_stages - 1)
        size = tuple(int(round(_interpolate(b, f, ratio)))
                     for b, f in zip(base_image_size, image_size))
        stages.append(Stage(
            index=i,
            start_epoch=(i * num_epochs) // n_stages,
            end_epoch=((i + 1) * num_epochs) // n_stages,
            image_size=size,
            randaug_magnitude=_interpolate(base_randaug_magnitude, randaug_magnitude, ratio),
            mixup_alpha=_interpolate(base_mixup, mixup_alpha, ratio),
            cutmix_alpha=_interpolate(base_cutmix, cutmix_alpha, ratio),
            dropout_rate=_interpolate(base_dropout, dropout_rate, ratio),
        ))
    return stages


def stage_of_epoch(stages, epoch):
    """The stage that contains ``epoch`` (for resuming in the middle of a stage)."""
    for stage in stages:
        if stage.start_epoch <= epoch < stage.end_epoch:
            return stage
    return stages[-1]
