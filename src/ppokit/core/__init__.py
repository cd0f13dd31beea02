"""The PPO core both front ends train through: advantages (GAE, and the registry of estimators for sequences:
gae, grpo, dr_grpo, rloo, reinforce++), pure loss functions, the one epochs x minibatches update loop with its
autograd minibatch step, the update's settings, schedules and KL controllers, running statistics, metrics, and
the time-major rollout batch.

Works on time-major [T, B] tensors plus a mask and depends on torch only. Names are imported on first use: GAE,
the schedules, the update loop and the update settings also run on numpy arrays (the gym front end's numpy
engine), and a numpy-only caller should not pay for importing torch.
"""

from ppokit.lazy_exports import lazy_getattr

_EXPORTS = {
    "gae": "advantages",
    "gae_reference": "advantages",
    "next_values_from": "advantages",
    "ADVANTAGE_ESTIMATORS": "estimators",
    "AdvantageInputs": "estimators",
    "estimate_advantages": "estimators",
    "register_estimator": "estimators",
    "LOSS_AGGREGATIONS": "losses",
    "loss_aggregation": "losses",
    "reference_kl_penalty": "losses",
    "RolloutBatch": "batch",
    "minibatch_indices": "batch",
    "clipped_surrogate": "losses",
    "value_loss": "losses",
    "entropy_bonus": "losses",
    "explained_variance": "metrics",
    "kl_k1": "losses",
    "kl_k3": "losses",
    "masked_mean": "losses",
    "masked_var": "losses",
    "masked_whiten": "losses",
    "Schedule": "schedules",
    "constant": "schedules",
    "linear": "schedules",
    "make_schedule": "schedules",
    "FixedKLController": "schedules",
    "AdaptiveKLController": "schedules",
    "RunningMeanStd": "running_stats",
    "UpdateSettings": "settings",
    "ppo_update": "update",
}

__all__ = list(_EXPORTS)


__getattr__ = lazy_getattr(__name__, _EXPORTS, globals())
