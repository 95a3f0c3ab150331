"""Iterative box refinement at inference (``model.box_refine_passes``, fashionparse.model.refine)."""

from __future__ import annotations

import dataclasses
from types import SimpleNamespace

import pytest
import torch
import torch.nn.functional as F
from torchvision.models.detection._utils import BoxCoder

from fashionparse.model import build_model
from fashionparse.model.refine import RefiningRoIHeads, refine_proposals
from tests.test_model import sample, tiny

torch.set_num_threads(1)

# class 1 and class 2 each regress every box onto one target box (the background's regression is unused)
TARGETS = torch.tensor([[0.0, 0.0, 1.0, 1.0], [10.0, 10.0, 40.0, 60.0], [5.0, 20.0, 70.0, 90.0]])
IMAGE_SHAPES = [(80, 64), (100, 100)]  # (height, width): class 2's target leaves the first image
PROPOSALS = [torch.tensor([[0.0, 0.0, 20.0, 20.0], [30.0, 30.0, 60.0, 60.0]]), torch.tensor([[8.0, 8.0, 30.0, 50.0]])]
# per pass, one row per proposal: background, class 1, class 2
LOGITS = [torch.tensor([[5.0, 0.0, 1.0], [0.0, 2.0, 1.0], [0.0, 0.0, 3.0]]),
          torch.tensor([[0.0, 0.5, 0.0], [1.0, 0.0, 2.0], [0.0, 5.0, 1.0]]),
          torch.tensor([[2.0, 0.0, 0.0], [0.0, 0.0, 0.0], [1.0, 1.0, 1.0]])]


def scripted_heads() -> SimpleNamespace:
    """Stand-in RoI heads: the "pooled features" of a RoI are its box, the head passes them on, and the
    predictor returns the next scripted logits and, for every class, the regression onto its target box
    (torchvision's box coder), so each pass's boxes are known in advance."""
    coder = BoxCoder((10.0, 10.0, 5.0, 5.0))
    calls = iter(LOGITS)

    def predictor(boxes: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        regression = torch.cat([coder.encode_single(t.expand_as(boxes), boxes) for t in TARGETS], 1)
        return next(calls), regression

    return SimpleNamespace(box_roi_pool=lambda features, boxes, shapes: torch.cat(boxes),
                           box_head=lambda x: x, box_predictor=predictor, box_coder=coder)


def test_one_pass_moves_each_proposal_to_its_most_likely_garment_box():
    heads = scripted_heads()
    logits, regression, boxes = refine_proposals(heads, {}, PROPOSALS, IMAGE_SHAPES, passes=1)
    # garments most likely in pass 0 (the background aside): class 2, class 1, class 2; class 2's target is
    # clipped to the first image (64 wide, 80 high), not to the second
    assert torch.allclose(boxes[0], torch.tensor([[5.0, 20.0, 64.0, 80.0], [10.0, 10.0, 40.0, 60.0]]), atol=1e-4)
    assert torch.allclose(boxes[1], torch.tensor([[5.0, 20.0, 70.0, 90.0]]), atol=1e-4)
    # the returned regression is the second pass's, relative to the moved boxes: it decodes to the targets
    decoded = heads.box_coder.decode(regression, boxes)
    assert torch.allclose(decoded, TARGETS.expand(3, 3, 4), atol=1e-3)
    # class scores: the normalised geometric mean of both passes' probabilities
    expected = (F.softmax(LOGITS[0], -1) * F.softmax(LOGITS[1], -1)).sqrt()
    assert torch.allclose(F.softmax(logits, -1), expected / expected.sum(1, keepdim=True), atol=1e-6)


def test_the_next_pass_follows_the_combined_scores():
    """The second pass moves each proposal by the garment its two passes' combined log-probabilities favour: the
    third proposal's is class 1 now (pass 0 alone favoured class 2; by hand, -3.12 against -4.12)."""
    heads = scripted_heads()
    logits, _, boxes = refine_proposals(heads, {}, PROPOSALS, IMAGE_SHAPES, passes=2)
    combined = F.log_softmax(LOGITS[0], -1) + F.log_softmax(LOGITS[1], -1)
    garments = combined[:, 1:].argmax(1) + 1
    assert garments.tolist() == [2, 2, 1]
    moved = torch.stack([TARGETS[c] for c in garments.tolist()])
    moved[:2] = torch.tensor([5.0, 20.0, 64.0, 80.0])  # class 2's target clipped to the first image
    assert torch.allclose(torch.cat(boxes), moved, atol=1e-3)
    combined = combined + F.log_softmax(LOGITS[2], -1)
    assert torch.allclose(logits, combined / 3, atol=1e-6)


def test_no_pass_is_the_plain_box_branch():
    heads = scripted_heads()
    logits, regression, boxes = refine_proposals(heads, {}, PROPOSALS, IMAGE_SHAPES, passes=0)
    assert all(torch.equal(a, b) for a, b in zip(boxes, PROPOSALS))
    assert torch.allclose(F.softmax(logits, -1), F.softmax(LOGITS[0], -1), atol=1e-6)
    assert torch.allclose(heads.box_coder.decode(regression, boxes), TARGETS.expand(3, 3, 4), atol=1e-3)


def _pair(passes: int) -> tuple[torch.nn.Module, torch.nn.Module]:
    """The tiny model without and with refinement, the same weights."""
    cfg = tiny(num_classes=6, box_score_thresh=0.0, box_detections_per_img=20)
    torch.manual_seed(0)
    plain = build_model(cfg)
    refining = build_model(dataclasses.replace(cfg, box_refine_passes=passes))
    refining.load_state_dict(plain.state_dict())  # same keys: checkpoints are interchangeable
    return plain, refining


@pytest.mark.parametrize("mask_format", ["full", "polygon"])
def test_the_model_refines_at_inference_only(mask_format):
    plain, refining = _pair(2)
    if mask_format == "polygon":  # the compact-mask heads inherit the refinement
        plain, refining = (build_model(tiny(num_classes=6, mask_format="polygon", box_refine_passes=p))
                           for p in (0, 2))
        refining.load_state_dict(plain.state_dict())
    assert isinstance(refining.roi_heads, RefiningRoIHeads) and refining.roi_heads.box_refine_passes == 2
    images, targets = sample()
    torch.manual_seed(1)
    plain_losses = plain.train()(images, targets)
    torch.manual_seed(1)
    refining_losses = refining.train()(images, targets)
    assert {k: v.item() for k, v in plain_losses.items()} == {k: v.item() for k, v in refining_losses.items()}

    with torch.no_grad():
        (before,) = plain.eval()(images)
        (after,) = refining.eval()(images)
    n = after["boxes"].shape[0]
    assert 0 < n <= refining.roi_heads.detections_per_img
    assert (after["scores"][:-1] >= after["scores"][1:]).all()  # torchvision's order: by score
    assert after["masks"].shape == (n, 1, 120, 150)
    assert not torch.equal(after["boxes"], before["boxes"][:n])


def test_refining_heads_refuse_an_unknown_setting():
    plain, _ = _pair(1)
    with pytest.raises(TypeError, match="no setting 'box_refine_pass'"):
        RefiningRoIHeads.like(plain.roi_heads, box_refine_pass=1)
