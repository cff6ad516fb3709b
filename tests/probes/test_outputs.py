"""Output probes: confidence, top-2 gap and class logits by hand, and predictions with the task."""

import math

import pytest
import torch

from optlab.probes.base import Evaluation, Observation
from optlab.probes.outputs import OUTPUTS, output_sums, predictions


def test_output_sums_by_hand():
    # Two points, C = 2. Point 1 logits (0, 0): p = (½, ½), confidence ½, gap 0.
    # Point 2 logits (ln 3, 0): p = (¾, ¼), confidence ¾, gap ½.
    # Majority class 1, minority class 0: logit sums 0 + 0 and 0 + ln 3.
    logits = torch.tensor([[[0.0, 0.0], [math.log(3), 0.0]]])
    sums = dict(zip(OUTPUTS, output_sums(logits, majority=1, minority=0)[0].tolist(), strict=True))
    assert sums == pytest.approx(
        {"confidence": 1.25, "top2_gap": 0.5, "majority_logit": 0.0, "minority_logit": math.log(3)}
    )


def test_predictions_carry_the_task_at_step_zero_only():
    ev = Evaluation(torch.zeros(2), torch.zeros(2), {}, torch.tensor([[0, 1, 1], [1, 1, 0]]))
    task = {"eval_points": torch.arange(6.0).view(3, 2)}
    first = predictions(Observation(step=0, params={}, evaluation=ev, task=task))
    assert first["predictions"].dtype == torch.uint8
    assert first["predictions"].tolist() == [[0, 1, 1], [1, 1, 0]]
    assert first["task/eval_points"].shape == (2, 3, 2)  # one copy per run
    later = predictions(Observation(step=50, params={}, evaluation=ev, task=task))
    assert set(later) == {"predictions"}


def test_predictions_take_the_labels_integer_type():
    # 300 classes do not fit uint8: the engine stores labels as int32, predictions follow
    ev = Evaluation(torch.zeros(1), torch.zeros(1), {}, torch.tensor([[299, 0]]))
    task = {"eval_labels": torch.tensor([299, 1], dtype=torch.int32)}
    out = predictions(Observation(step=0, params={}, evaluation=ev, task=task))
    assert out["predictions"].dtype == torch.int32 and out["predictions"].tolist() == [[299, 0]]
