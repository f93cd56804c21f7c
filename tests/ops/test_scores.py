import math

import pytest

from ddlight.ops.scores import augmentation_robust, label_robust, unit_exp


def test_label_robust_score_by_hand():
    s = label_robust(full_hard=0.99, set_hard=0.90, set_any=0.95, random_any=0.80, w=0.5)
    assert s["HLR"] == pytest.approx(0.09) and s["IOR"] == pytest.approx(0.15)
    assert s["alpha"] == pytest.approx(0.5 * 0.15 - 0.5 * 0.09)
    # (e^0.03 - e^-1) / (e - e^-1) = 0.662576 / 2.350402
    assert s["LRS"] == pytest.approx(0.2818986, abs=1e-6)


def test_weights_move_the_score_between_its_two_terms():
    only_ior = label_robust(0.99, 0.90, 0.95, 0.80, w=1.0)
    only_hlr = label_robust(0.99, 0.90, 0.95, 0.80, w=0.0)
    assert only_ior["alpha"] == pytest.approx(0.15) and only_hlr["alpha"] == pytest.approx(-0.09)
    with pytest.raises(ValueError, match="w must be in"):
        label_robust(0.99, 0.90, 0.95, 0.80, w=1.5)


def test_scores_span_zero_to_one_on_fractions_and_refuse_percentages():
    assert unit_exp(1.0) == pytest.approx(1.0) and unit_exp(-1.0) == pytest.approx(0.0)
    assert unit_exp(0.0) == pytest.approx((1 - math.exp(-1)) / (math.e - math.exp(-1)))
    # DD-Ranking's code passes percentages: a set 5.3 points over random would score e^... > 1
    with pytest.raises(ValueError, match="fraction in \\[0, 1\\]"):
        label_robust(99.5, 90.0, 95.0, 80.0)


def test_augmentation_robust_score_by_hand():
    s = augmentation_robust(set_aug=0.95, random_aug=0.80, set_plain=0.90, random_plain=0.70, gamma=0.25)
    assert s["gap_aug"] == pytest.approx(0.15) and s["gap_no_aug"] == pytest.approx(0.20)
    assert s["beta"] == pytest.approx(0.25 * 0.15 + 0.75 * 0.20)
    assert s["ARS"] == pytest.approx((math.exp(0.1875) - math.exp(-1)) / (math.e - math.exp(-1)))
