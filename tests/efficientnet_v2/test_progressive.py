"""Stage-wise progressive learning schedule (EfficientNetV2 Algorithm 1)."""
import pytest

from common.config import load_config
from efficientnet_v2.progressive import stage_of_epoch, stage_schedule


def test_four_stages_interpolate_linearly():
    stages = stage_schedule(350, 4, image_size=(300, 300), base_image_size=(128, 128),
                            randaug_magnitude=10, base_randaug_magnitude=5,
                            mixup_alpha=0.0, base_mixup=0.0, dropout_rate=0.2, base_dropout=0.1)
    assert [s.image_size for s in stages] == [(128, 128), (185, 185), (243, 243), (300, 300)]
    assert [round(s.randaug_magnitude, 4) for s in stages] == [5.0, 6.6667, 8.3333, 10.0]
    assert [round(s.dropout_rate, 4) for s in stages] == [0.1, 0.1333, 0.1667, 0.2]
    assert [(s.start_epoch, s.end_epoch) for s in stages] == [(0, 87), (87, 175), (175, 262),
                                                               (262, 350)]


def test_one_stage_ignores_base_values():
    (stage,) = stage_schedule(10, 1, image_size=(300, 300), base_image_size=(128, 128),
                              randaug_magnitude=15, base_randaug_magnitude=5, mixup_alpha=0.2,
                              base_mixup=0.0, cutmix_alpha=0.5, base_cutmix=0.1,
                              dropout_rate=0.3, base_dropout=0.1)
    assert stage.image_size == (300, 300) and stage.randaug_magnitude == 15
    assert stage.mixup_alpha == 0.2 and stage.cutmix_alpha == 0.5 and stage.dropout_rate == 0.3
    assert (stage.start_epoch, stage.end_epoch) == (0, 10)


def test_non_square_sizes_and_resume_lookup():
    stages = stage_schedule(9, 3, image_size=(256, 320), base_image_size=(128, 160))
    assert [s.image_size for s in stages] == [(128, 160), (192, 240), (256, 320)]
    assert stage_of_epoch(stages, 0).index == 0
    assert stage_of_epoch(stages, 4).index == 1  # resuming in the middle of stage 1
    assert stage_of_epoch(stages, 8).index == 2


def test_bad_stage_counts():
    with pytest.raises(ValueError, match="n_stages must be >= 1"):
        stage_schedule(10, 0, (64, 64), (32, 32))
    with pytest.raises(ValueError, match="cannot exceed num_epochs"):
        stage_schedule(2, 3, (64, 64), (32, 32))


def test_v2_s_preset_matches_the_paper():
    progressive = load_config(model_name="efficientnetv2-s").model.progressive
    assert progressive.n_stages == 4 and progressive.base_image_size == (128, 128)
    assert progressive.base_randaug_magnitude == 5 and progressive.randaug_magnitude == 10
    assert load_config(model_name="efficientnet-b0").model.progressive.n_stages == 1
