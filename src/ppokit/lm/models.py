"""Loading, building and saving causal language models, reward models and their tokenizers.

Every model loads through ``from_pretrained`` from a local folder or a hub id, with safetensors only
(``use_safetensors=True``: a pickled ``pytorch_model.bin`` is refused, never unpickled) and no
remote code. Tests and demos build tiny models from a config, save them, and load them back through
the same functions a user's model takes.
"""

from __future__ import annotations

import re
from pathlib import Path

import torch

from ppokit.errors import ConfigError


def quiet_transformers() -> None:
    """transformers reports every load with a table and a progress bar; ppokit has its own output."""
    from transformers.utils import logging as hf_logging

    hf_logging.set_verbosity_error()
    hf_logging.disable_progress_bar()


# the folders where ppokit's trainers save their model inside a run dir: PPO's policy, SFT's and the reward model's model
RUN_DIR_MODELS = ("policy", "model")
# a folder holding one of these is a model's (or a tokenizer's) folder itself
MODEL_FILES = ("config.json", "tokenizer_config.json")
_HUB_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*(/[A-Za-z0-9_.-]+)?$")


def model_source(name_or_path: str | Path) -> str:
    """Where a model is loaded from: a model folder as it is; a ppokit run dir's saved model (``policy/`` or ``model/``);
    a hub id as it is. A path that is neither is a ConfigError saying which folder does not exist."""
    source = str(name_or_path)
    path = Path(source)
    if path.is_dir():
        if any((path / name).is_file() for name in MODEL_FILES):
            return source
        for name in RUN_DIR_MODELS:
            if (path / name / "config.json").is_file():
                return str(path / name)
        raise ConfigError(f"{source!r} holds no model (no config.json); expected a model folder, or a ppokit run dir "
                          f"with its model in {' or '.join(f'{name}/' for name in RUN_DIR_MODELS)}")
    if path.exists():
        raise ConfigError(f"{source!r} is a file; expected a model folder or a hub model id")
    if not _HUB_ID.match(source) or source.count("/") > 1:
        raise ConfigError(f"the folder {source!r} does not exist (and it is not a hub model id of the form 'name' or 'org/name')")
    return source


def _load_failure(what: str, source: str, exc: Exception) -> ConfigError:
    """A load that failed: for a name that is not a local folder, say it was taken for a hub id that could not be fetched."""
    if Path(source).exists():
        return ConfigError(f"cannot load {what} from {source!r}: {exc}")
    first_line = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    return ConfigError(f"{source!r} is not a folder here, so it was taken for a hub model id, and {what} could not be fetched from the hub "
                       f"(no network, or no such model): {first_line}")


def load_tokenizer(name_or_path: str | Path):
    """The tokenizer of a model, with a pad token that is not EOS (added if missing, see ensure_pad_token)."""
    from transformers import AutoTokenizer

    quiet_transformers()
    source = model_source(name_or_path)
    try:
        tokenizer = AutoTokenizer.from_pretrained(source, trust_remote_code=False)
    except (OSError, ValueError) as exc:
        raise _load_failure("a tokenizer", source, exc) from None
    ensure_pad_token(tokenizer)
    return tokenizer


def ensure_pad_token(tokenizer) -> bool:
    """Give the tokenizer a dedicated pad token when it has none or when pad is EOS.

    Padding with EOS (a common shortcut) makes the model unable to tell a finished response from
    padding, so ppokit adds '<pad>' instead. Returns True when a token was added: the model's
    embeddings must then grow (``resize_for_tokenizer``).
    """
    if tokenizer.eos_token_id is None:
        raise ConfigError("the tokenizer has no EOS token; ppokit needs one to end responses (set tokenizer.eos_token)")
    if tokenizer.pad_token_id is not None and tokenizer.pad_token_id != tokenizer.eos_token_id:
        return False
    tokenizer.add_special_tokens({"pad_token": "<pad>"})
    return True


def resize_for_tokenizer(model, tokenizer) -> None:
    """Grow the embeddings when the tokenizer has more tokens than the model, and record pad/EOS ids."""
    if len(tokenizer) > model.get_input_embeddings().weight.shape[0]:
        model.resize_token_embeddings(len(tokenizer))
    model.config.pad_token_id = tokenizer.pad_token_id
    model.config.eos_token_id = tokenizer.eos_token_id
    if getattr(model, "generation_config", None) is not None:
        model.generation_config.pad_token_id = tokenizer.pad_token_id
        model.generation_config.eos_token_id = tokenizer.eos_token_id


def load_causal_lm(name_or_path: str | Path, tokenizer=None, dtype: torch.dtype = torch.float32):
    """An ``AutoModelForCausalLM`` from a local folder or hub id (its weights loaded in ``dtype``), resized for ``tokenizer`` if given."""
    from transformers import AutoModelForCausalLM

    quiet_transformers()
    model = _from_pretrained(AutoModelForCausalLM, name_or_path, dtype=dtype)
    if tokenizer is not None:
        resize_for_tokenizer(model, tokenizer)
    return model


def load_scalar_model(name_or_path: str | Path, tokenizer=None, dtype: torch.dtype = torch.float32):
    """An ``AutoModelForSequenceClassification`` with one output: a reward model or a value model.

    Loading a causal LM's folder works too: its body is kept and the scalar head starts fresh.
    """
    from transformers import AutoModelForSequenceClassification

    quiet_transformers()
    model = _from_pretrained(AutoModelForSequenceClassification, name_or_path, dtype=dtype, num_labels=1)
    if model.config.num_labels != 1:
        raise ConfigError(f"{str(name_or_path)!r} has {model.config.num_labels} labels; a reward or value model needs exactly one")
    if tokenizer is not None:
        resize_for_tokenizer(model, tokenizer)
    return model


def _from_pretrained(auto_class, name_or_path, **kwargs):
    source = model_source(name_or_path)
    path = Path(source)
    if path.exists() and path.is_dir() and not any(path.glob("*.safetensors")):
        found = sorted(p.name for p in path.iterdir())
        raise ConfigError(f"{source!r} holds no *.safetensors weights (found {found}); ppokit loads safetensors only and never unpickles .bin files")
    try:
        return auto_class.from_pretrained(source, use_safetensors=True, trust_remote_code=False, **kwargs)
    except (OSError, ValueError) as exc:
        raise _load_failure(f"an {auto_class.__name__}", source, exc) from None


def save_pretrained(model, tokenizer, directory: str | Path, state_dict: dict | None = None) -> Path:
    """Save weights as safetensors and config/tokenizer as JSON, loadable by ``from_pretrained``.

    ``state_dict``: the weights to write instead of the model's own (a sharded model's, gathered)."""
    quiet_transformers()
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(str(directory), safe_serialization=True, state_dict=state_dict)
    if tokenizer is not None:
        tokenizer.save_pretrained(str(directory))
    return directory


def build_tiny_causal_lm(tokenizer, architecture: str = "gpt2", hidden_size: int = 64, num_layers: int = 2,
                         num_heads: int = 4, max_positions: int = 64, seed: int = 0):
    """A small randomly initialized causal LM from a config (for demos and tests; nothing is downloaded)."""
    from transformers import AutoModelForCausalLM, GPT2Config, LlamaConfig

    quiet_transformers()
    common = {"vocab_size": len(tokenizer), "pad_token_id": tokenizer.pad_token_id, "eos_token_id": tokenizer.eos_token_id,
              "bos_token_id": tokenizer.bos_token_id if tokenizer.bos_token_id is not None else tokenizer.eos_token_id}
    if architecture == "gpt2":
        # gelu_pytorch_tanh is GPT-2's tanh GELU as one fused torch kernel: same function, about 4x
        # cheaper than the five elementwise ops of the default "gelu_new" at this size
        config = GPT2Config(n_embd=hidden_size, n_layer=num_layers, n_head=num_heads, n_positions=max_positions,
                            activation_function="gelu_pytorch_tanh", resid_pdrop=0.0, embd_pdrop=0.0, attn_pdrop=0.0, **common)
    elif architecture == "llama":
        config = LlamaConfig(hidden_size=hidden_size, intermediate_size=hidden_size * 2, num_hidden_layers=num_layers,
                             num_attention_heads=num_heads, num_key_value_heads=num_heads, max_position_embeddings=max_positions,
                             tie_word_embeddings=False, **common)
    else:
        raise ConfigError(f"architecture must be 'gpt2' or 'llama', got {architecture!r}")
    torch.manual_seed(seed)
    return AutoModelForCausalLM.from_config(config)


def disable_dropout(model) -> None:
    """Dropout off for good, so train mode (needed by gradient checkpointing) computes what eval mode does.

    PPO's first ratio of an update is exactly 1 only if the update's forward pass repeats the rollout's.
    """
    for module in model.modules():
        if isinstance(module, torch.nn.Dropout):
            module.p = 0.0
        for name in ("attention_dropout", "dropout"):  # float attributes some attention layers read
            if isinstance(getattr(module, name, None), float):
                setattr(module, name, 0.0)


def enable_gradient_checkpointing(model) -> None:
    """Recompute activations in the backward pass (transformers' activation checkpointing, non-reentrant).

    transformers applies it in train mode only: the trainers switch the model to train mode for
    their gradient steps.
    """
    base = model.get_base_model() if hasattr(model, "get_base_model") else model
    if not getattr(base, "supports_gradient_checkpointing", False):
        raise ConfigError(f"gradient_checkpointing=true, but {type(base).__name__} does not support it; set gradient_checkpointing=false")
    options = {"use_reentrant": False}  # works when no input requires grad (frozen embeddings, LoRA)
    if hasattr(base, "activation_checkpointing_enable"):  # transformers >= 5
        base.activation_checkpointing_enable(activation_checkpointing_kwargs=options)
    else:
        base.gradient_checkpointing_enable(gradient_checkpointing_kwargs=options)


def context_length(model) -> int | None:
    """The longest sequence the model's position embeddings allow, if its config says."""
    for name in ("n_positions", "max_position_embeddings", "n_ctx"):
        value = getattr(model.config, name, None)
        if isinstance(value, int) and value > 0:
            return value
    return None
