import os

# Small networks run fastest, and most reproducibly, on one thread.
os.environ.setdefault("OMP_NUM_THREADS", "1")

import torch  # noqa: E402

torch.set_num_threads(1)

import pytest  # noqa: E402


@pytest.fixture(scope="session")
def saved_model(tmp_path_factory):
    """A tiny GPT-2 and the sort task's tokenizer, saved and loaded back like a user's model."""
    from ppokit.lm.models import build_tiny_causal_lm, save_pretrained
    from ppokit.lm.tasks import get_task

    sort = get_task("sort")
    directory = tmp_path_factory.mktemp("tiny") / "base"
    save_pretrained(build_tiny_causal_lm(sort.build_tokenizer(), **sort.model), sort.build_tokenizer(), directory)
    return directory
