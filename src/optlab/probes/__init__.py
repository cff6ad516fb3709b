"""Probes: what is recorded at the eval cadence besides loss and accuracy (DESIGN principle 5).

A spec chooses probes by name (``probes.record``); the default set (params, outputs,
scalars) is cheap enough for every run. Metric probes write to the metrics table under
their split, with names ``<tensor>/<quantity>``; array probes write to the arrays table.

=============  ==========  ================================================================
probe          split       names
=============  ==========  ================================================================
params         params      ``<tensor>/{min,mean,max,rms,l2,linf}``
outputs        outputs     ``confidence``, ``top2_gap``, ``majority_logit``, ``minority_logit``
scalars        scalars     ``<tensor>`` or ``<tensor>/<i>`` for tensors of ≤ 4 entries
moments        moments     ``<tensor>/{sqrt_v_hat_min,sqrt_v_hat_median,sqrt_v_hat_max,m_hat_norm}``
update         update      ``<tensor>/{update_ratio,decay_ratio,adaptive_ratio,decay_share}``
distance       distance    ``<tensor>/{distance,cosine}`` (from θ_0)
decayed_init   decayed_init  ``<tensor>/{distance,angle}``: ‖w_k − P_k w_0‖, ∠(w_k, w_0)
effective_lr   effective_lr  ``<tensor>/effective_lr``: η/‖w‖² (SGD) or η/‖w‖ (gradient-scale-free
                           rules) for scale-invariant tensors
invariance     invariance  ``<tensor>/{grad_cosine,norm_law_residual,angular_update}`` for
                           scale-invariant tensors: cos(w_k, g_k), the SGD norm law's residual,
                           ∠(w_k, w_{k+1})
kfac           kfac        ``<t>/{A_trace,G_trace,A_lambda_max,G_lambda_max,A_damping_ratio,
                           G_damping_ratio,damping_ratio}`` for K-FAC's layers: its factors and
                           the damping γ against their largest eigenvalues (mechanism 3)
jacobian       jacobian    ``gn_norm``, ``jacobian_sq``, ``ratio`` and ``jacobian_sq_whitened``,
                           ``ratio_whitened``: θᵀĜθ (gauss_newton factors of a fixed eval
                           batch), E‖∂f/∂x‖²_F (w.r.t. whitened inputs), gn_norm/((L+1)·each)
                           (mechanism 2)
grad_stats     grad_stats  ``{mean_sq,trace_var,noise_scale,noise_scale_2b,snr,cos_update_grad}``
                           and with Adam's moments ``{kl_adam,kl_adam_reverse,kl_invalid_share,
                           v_hat_tracks,sqrt_v_norm,sqrt_v_min,sqrt_v_max}``, bare (all
                           parameters) and per ``<tensor>/``, from per-example gradients of the
                           first 256 training examples at the weights the step read; every
                           ``probes.grad_every`` steps (default: the eval cadence)
snapshots      (arrays)    ``snapshot/<tensor>`` for tensors of ≤ 8192 entries
predictions    (arrays)    ``predictions`` (R, N) uint8; ``task/{eval_points,eval_labels,
                           centers,center_labels}`` at step 0
=============  ==========  ================================================================
"""

from __future__ import annotations

from optlab.probes import gradient_stats, invariance, kfac, optimizer, outputs, tensors
from optlab.probes.base import Evaluation, Jacobians, Observation, Probe, Update

PROBES: dict[str, Probe] = {
    "params": Probe("params", tensors.params),
    "outputs": Probe("outputs", outputs.outputs),
    "scalars": Probe("scalars", tensors.scalars),
    "moments": Probe("moments", optimizer.moments),
    "update": Probe("update", optimizer.step_ratios, needs=frozenset({"update"})),
    "grad_stats": Probe(
        "grad_stats", gradient_stats.grad_stats, needs=frozenset({"update"}), grad_cadence=True
    ),
    "distance": Probe("distance", tensors.distance, needs=frozenset({"init"})),
    "decayed_init": Probe("decayed_init", optimizer.decayed_init, needs=frozenset({"init"})),
    "effective_lr": Probe("effective_lr", invariance.effective_lr),
    "invariance": Probe("invariance", invariance.invariance, needs=frozenset({"update"})),
    "kfac": Probe("kfac", kfac.kfac),
    "jacobian": Probe("jacobian", kfac.jacobian),
    "snapshots": Probe("snapshots", tensors.snapshots, arrays=True),
    "predictions": Probe(
        "predictions", outputs.predictions, needs=frozenset({"predictions"}), arrays=True
    ),
}

__all__ = ["PROBES", "Evaluation", "Jacobians", "Observation", "Probe", "Update"]
