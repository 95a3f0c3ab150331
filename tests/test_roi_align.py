"""The gathered RoIAlign against torchvision's op and pooler: same values and same feature gradients."""

from __future__ import annotations

from unittest import mock

import pytest
import torch
from torchvision.ops import MultiScaleRoIAlign, roi_align

from fashionparse.model import build_model
from fashionparse.model import roi_align as gathered
from fashionparse.model.roi_align import GatherMultiScaleRoIAlign, roi_align_gather
from tests.test_model import sample, tiny

torch.set_num_threads(1)
NAMES = ["0", "1", "2", "3"]


def random_boxes(n: int, extent: float, generator: torch.Generator, largest: float = 60) -> torch.Tensor:
    """[n, 4] boxes of 0.3 to ``largest`` px, some reaching past the image's extent on any side."""
    xy = torch.rand(n, 2, generator=generator) * (extent + 40) - 20
    wh = torch.rand(n, 2, generator=generator) * largest + 0.3
    return torch.cat([xy, xy + wh], 1)


def pyramid(batch: int, channels: int, size: int, generator: torch.Generator) -> dict[str, torch.Tensor]:
    """FPN-like maps of strides 4..32 for ``size`` x ``size`` images, with gradients."""
    return {name: torch.randn(batch, channels, size // 2 ** (2 + i), size // 2 ** (2 + i), generator=generator,
                              requires_grad=True) for i, name in enumerate(NAMES)}


@pytest.mark.parametrize("sampling_ratio", [1, 2, 3])
@pytest.mark.parametrize("output_size", [(7, 7), (14, 14), (5, 3)])
def test_single_level_matches_torchvision_values_and_gradients(sampling_ratio, output_size):
    g = torch.Generator().manual_seed(sampling_ratio)
    x = torch.randn(3, 8, 20, 24, generator=g)
    boxes = random_boxes(40, 90, g)
    batch_index = torch.randint(0, 3, (40,), generator=g)
    x_ref, x_ours = x.clone().requires_grad_(), x.clone().requires_grad_()
    ref = roi_align(x_ref, torch.cat([batch_index[:, None].float(), boxes], 1), output_size, 0.25,
                    sampling_ratio, aligned=False)
    ours = roi_align_gather([x_ours], boxes, batch_index, torch.zeros(40, dtype=torch.long), [0.25],
                            output_size, sampling_ratio)
    torch.testing.assert_close(ours, ref, atol=1e-5, rtol=1e-5)
    upstream = torch.randn(ref.shape, generator=g)
    ref.backward(upstream)
    ours.backward(upstream)
    torch.testing.assert_close(x_ours.grad, x_ref.grad, atol=1e-4, rtol=1e-4)  # sums of many terms


def test_multiscale_pooler_matches_torchvision_in_training():
    g = torch.Generator().manual_seed(0)
    features = pyramid(3, 8, 512, g)  # the second image has no boxes
    boxes = [random_boxes(n, 512, g, largest=500).clamp(0, 512) for n in (60, 0, 50)]
    boxes = [b[(b[:, 2] > b[:, 0]) & (b[:, 3] > b[:, 1])] for b in boxes]
    shapes = [(512, 512)] * 3
    ref_pool, our_pool = MultiScaleRoIAlign(NAMES, 7, 2), GatherMultiScaleRoIAlign(NAMES, 7, 2)
    ref_in = {k: v.detach().clone().requires_grad_() for k, v in features.items()}
    with mock.patch.object(gathered, "roi_align_gather", wraps=gathered.roi_align_gather) as spy:
        ours = our_pool(features, boxes, shapes)
    assert spy.call_count == 1
    ref = ref_pool(ref_in, boxes, shapes)
    assert our_pool.scales == ref_pool.scales == [1 / 4, 1 / 8, 1 / 16, 1 / 32]
    assert len(set(ref_pool.map_levels(boxes).tolist())) >= 3  # the boxes spread over the levels
    torch.testing.assert_close(ours, ref, atol=1e-5, rtol=1e-5)
    upstream = torch.randn(ref.shape, generator=g)
    ours.backward(upstream)
    ref.backward(upstream)
    for name in NAMES:
        torch.testing.assert_close(features[name].grad, ref_in[name].grad, atol=1e-4, rtol=1e-4)


def test_bfloat16_features_pool_in_float32_like_torchvision_autocast():
    g = torch.Generator().manual_seed(1)
    x = torch.randn(1, 8, 16, 16, generator=g).bfloat16()
    boxes = random_boxes(10, 64, g)
    ours = roi_align_gather([x], boxes, torch.zeros(10, dtype=torch.long), torch.zeros(10, dtype=torch.long),
                            [0.25], (7, 7), 1)
    ref = roi_align(x.float(), [boxes], (7, 7), 0.25, 1)
    assert ours.dtype == torch.bfloat16
    torch.testing.assert_close(ours, ref.bfloat16())


def test_no_boxes_give_an_empty_batch():
    x = torch.randn(2, 4, 8, 8, requires_grad=True)
    empty = torch.zeros(0, 4)
    out = roi_align_gather([x], empty, torch.zeros(0, dtype=torch.long), torch.zeros(0, dtype=torch.long),
                           [0.5], (7, 7), 2)
    assert out.shape == (0, 4, 7, 7)


def test_evaluation_and_adaptive_sampling_use_torchvision():
    g = torch.Generator().manual_seed(2)
    features = pyramid(1, 8, 128, g)
    boxes = [random_boxes(12, 128, g).clamp(0, 128)]
    adaptive, evaluating = GatherMultiScaleRoIAlign(NAMES, 7, 0), GatherMultiScaleRoIAlign(NAMES, 7, 1).eval()
    with mock.patch.object(gathered, "roi_align_gather") as spy:
        first = adaptive(features, boxes, [(128, 128)])
        second = evaluating(features, boxes, [(128, 128)])
    spy.assert_not_called()
    assert torch.equal(first, MultiScaleRoIAlign(NAMES, 7, 0)(features, boxes, [(128, 128)]))
    assert torch.equal(second, MultiScaleRoIAlign(NAMES, 7, 1)(features, boxes, [(128, 128)]))


def test_model_with_gathered_pooling_trains_with_the_same_state_dict():
    plain = build_model(tiny(roi_sampling_ratio=1))
    model = build_model(tiny(roi_sampling_ratio=1, roi_align="gather"))
    assert isinstance(model.roi_heads.box_roi_pool, GatherMultiScaleRoIAlign)
    assert isinstance(model.roi_heads.mask_roi_pool, GatherMultiScaleRoIAlign)
    assert model.state_dict().keys() == plain.state_dict().keys()
    model.load_state_dict(plain.state_dict())
    images, targets = sample()
    torch.manual_seed(0)
    ref = plain.train()(images, targets)
    model.train()
    torch.manual_seed(0)
    with mock.patch.object(gathered, "roi_align_gather", wraps=gathered.roi_align_gather) as spy:
        losses = model(images, targets)
    assert spy.call_count == 2  # box and mask branch
    for name, value in ref.items():
        torch.testing.assert_close(losses[name], value, atol=1e-4, rtol=1e-4)
