"""The benchmark's FLOP count and its plain baselines compute what optlab's models compute."""

import shutil

import pytest
import torch

from optlab.bench import plain
from optlab.bench.measure import Plan, _spec, compiled_case, final_flops_per_step, run_bench
from optlab.config import ModelSpec
from optlab.engine.precision import cpu_name, native_bf16
from optlab.models import build_model
from optlab.store import Store
from optlab.tasks.voronoi import make_environment

needs_compiler = pytest.mark.skipif(
    shutil.which("c++") is None, reason="Inductor needs a C++ compiler"
)


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


def test_bench_reports_the_issues_keys_and_consistent_ratios():
    plan = Plan(
        final_steps=2,
        ladder_steps={"centers": 3, "plus_minus": 3},
        module_steps={"digits": 50, "charlm": 4},
        stacks=(1, 32),
        n_eval=64,
        compiled=False,
        steady_steps={"final": 8, "centers": 8},
        steady_window=2,
        steady_eval_every=2,
        bf16_steps={"final": 3, "charlm": 3},
        grad_steps={"centers": (4, 2), "final": (2, 2), "charlm": (2, 2)},
    )
    out = run_bench(plan=plan)
    assert out["device"].startswith("cpu") and out["threads"] == torch.get_num_threads()
    assert out["matmul_peak_gflops"] > 0
    final = out["final"]
    flops = final["steps_per_s"] * 3.231711232 / out["matmul_peak_gflops"]
    assert abs(final["pct_of_peak"] - 100 * flops) < 1e-6 * final["pct_of_peak"]
    for name in ("centers", "plus_minus"):
        case = out[name]
        r1, r32 = case["r1_run_steps_per_s"], case["r32_run_steps_per_s"]
        assert case["speedup_r32"] == r32 / r1
        assert case["stacked_vs_plain_loop"] == r32 / case["plain_loop_steps_per_s"]
        assert case["vs_plain_loop"] == r1 / case["plain_loop_steps_per_s"]
        per_cadence = out["eval_every"] * 1000 / r1  # ms of training per eval at R = 1
        assert case["eval_vs_training"] == case["eval_ms_per_run_r1"] / per_cadence
    for name in ("final", "centers", "plus_minus"):
        assert 10 < out[name]["peak_rss_mb"] < 10_000 and out[name]["store_bytes_per_run"] > 0
        assert out[name]["vs_plain_loop"] > 0
    for name in ("final", "centers"):
        case = out[name]
        ratio = case["steady_steps_per_s"] / case["start_steps_per_s"]
        assert case["steady_vs_start"] == ratio and case["steady_after_steps"] == 6
    for name in ("digits", "charlm"):
        case = out[name]
        r1, r8, plain = (
            case[k] for k in ("r1_run_steps_per_s", "r8_run_steps_per_s", "plain_loop_steps_per_s")
        )
        long = case["plain_loop_long_steps_per_s"]  # the same loop over 8× the steps
        assert case["vs_plain_loop"] == r1 / plain and case["stacked_vs_plain_loop"] == r8 / long
    kfac = out["kfac"]
    assert kfac["step_cost_vs_adamw"] == kfac["adamw_steps_per_s"] / kfac["fisher_steps_per_s"]
    gn = kfac["adamw_steps_per_s"] / kfac["gauss_newton_steps_per_s"]
    assert kfac["gauss_newton_step_cost_vs_adamw"] == gn
    charlm = out["charlm"]
    gflop = charlm["gflop_per_step"]
    # B·T·(6·N + 12·L·T·C): batch 32, block 64, 2 layers of width 128, a vocabulary of 100
    assert gflop == 32 * 64 * (6 * (12 * 2 * 128**2 + 128 * 100) + 12 * 2 * 64 * 128) / 1e9
    share = 100 * charlm["r1_run_steps_per_s"] * gflop / out["matmul_peak_gflops"]
    assert abs(charlm["pct_of_peak"] - share) < 1e-9 * share
    # bf16 against fp32, side by side; the CPU named with its bfloat16 support
    assert out["native_bf16"] is native_bf16(torch.device("cpu"))
    assert out["bf16_support"].startswith(f"{cpu_name()}: ")
    assert cpu_name() in out["device"]
    for name in ("final_bf16", "charlm_bf16"):
        case = out[name]
        ratio = case["bf16_steps_per_s"] / case["fp32_steps_per_s"]
        assert case["speedup_vs_fp32"] == ratio and case["fp32_steps_per_s"] > 0
    for name, (steps, every_step) in plan.grad_steps.items():
        g = out["grad_stats"]["overhead"][name]
        assert g["steps"] == steps and g["every_step_steps"] == every_step
        assert g["default_cadence"] == g["seconds_default"] / g["seconds_without"]
        assert g["every_step"] == g["seconds_every_step"] / g["seconds_every_step_without"]


@needs_compiler
def test_compiled_rows_relate_to_the_same_plain_loop(tmp_path):
    spec = _spec("plus_minus", 3, 32, 5e-3, 64, None, eval_every=3)
    case = compiled_case(spec, Store(tmp_path / "b.db"), plain_loop=100.0, repeats=1)
    r1, r32 = case["r1_run_steps_per_s"], case["r32_run_steps_per_s"]
    assert case["vs_plain_loop"] == r1 / 100.0 and case["stacked_vs_plain_loop"] == r32 / 100.0
    assert case["speedup_r32"] == r32 / r1 and case["compile_s"] > 0
