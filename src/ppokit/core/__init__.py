"""The PPO core: advantages, losses, the minibatch update and schedules.

Works on time-major [T, B] tensors plus a mask and imports torch only, so the Gymnasium and the
language-model front ends share one implementation.
"""

from ppokit.core.advantages import gae, gae_reference, next_values_from
from ppokit.core.batch import RolloutBatch
from ppokit.core.losses import (
    clipped_surrogate,
    entropy_bonus,
    explained_variance,
    kl_k1,
    kl_k3,
    masked_mean,
    masked_var,
    masked_whiten,
    value_loss,
)
from ppokit.core.schedules import Schedule, constant, linear, make_schedule
from ppokit.core.update import UpdateSettings, ppo_update

__all__ = [
    "RolloutBatch",
    "gae",
    "gae_reference",
    "next_values_from",
    "clipped_surrogate",
    "value_loss",
    "entropy_bonus",
    "explained_variance",
    "kl_k1",
    "kl_k3",
    "masked_mean",
    "masked_var",
    "masked_whiten",
    "Schedule",
    "constant",
    "linear",
    "make_schedule",
    "UpdateSettings",
    "ppo_update",
]
