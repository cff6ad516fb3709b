"""The benchmark's FLOP count and its plain baselines compute what optlab's models compute."""

import torch

from optlab.bench import plain
from optlab.bench.measure import final_flops_per_step
from optlab.config import ModelSpec
from optlab.models import build_model
from optlab.tasks.voronoi import make_environment


def test_final_flops_at_hidden_512_batch_1024_is_3_23_gflop():
    # 3 × 2·1024·(2·512 + 512² + 512² + 512·2) − 2·1024·2·512 = 3,231,711,232
    assert final_flops_per_step(2, 512, 2, 1024) == 3_231_711_232


def test_plain_plus_minus_matches_optlab():
    env = make_environment(2, 2, 10, 200, 10, 42, "paper")
    torch.manual_seed(0)
    ref = plain.PlusMinus(torch.from_numpy(env.centers), 2)
    params = {
        "W": ref.head.weight.T,
        "offset": ref.offset,
        "scale": ref.scale,
        "plus_minus": ref.plus_minus,
    }
    x = torch.from_numpy(env.points["eval"])
    ours = build_model(ModelSpec(name="plus_minus"), env).forward(
        {k: v.detach()[None] for k, v in params.items()}, x[None]
    )[0]
    assert torch.allclose(ours, ref(x), atol=1e-6)
