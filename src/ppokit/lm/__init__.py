"""The language-model front end: SFT, a reward model on preference pairs, and PPO with a per-token KL
penalty against a frozen reference, on Hugging Face transformers and the shared ``ppokit.core``.

    from ppokit.lm import SFTTrainer, RewardModelTrainer, LMPPOTrainer, FunctionReward
"""

from ppokit.lazy_exports import lazy_getattr

_EXPORTS = {
    "SFTConfig": "config",
    "RewardModelConfig": "config",
    "LMPPOConfig": "config",
    "SFTTrainer": "sft",
    "RewardModelTrainer": "reward_model",
    "LMPPOTrainer": "ppo",
    "FunctionReward": "rewards",
    "RewardModelReward": "rewards",
    "SumReward": "rewards",
    "load_causal_lm": "models",
    "load_tokenizer": "models",
    "generate": "generation",
    "GenerationSettings": "generation",
    "get_task": "tasks",
    "run_demo": "demo",
    "resolve_device": "device",
    "Precision": "precision",
}

__all__ = list(_EXPORTS)


__getattr__ = lazy_getattr(__name__, _EXPORTS, globals())
