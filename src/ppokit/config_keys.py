"""Every config key with its default and meaning, read from the config dataclasses themselves (the string under each field
is its documentation), so that `ppokit keys`, `--help` and the README's tables cannot drift from the code.

    ppokit keys train|sft|rm|ppo            # the keys of `ppokit train` / `ppokit lm sft|rm|ppo`
    python -m ppokit.config_keys README.md  # rewrite the README's tables between their <!-- keys:NAME --> markers
"""

from __future__ import annotations

import re
import sys
from pathlib import Path

from ppokit.config_docs import markdown_table


def config_classes() -> dict[str, type]:
    from ppokit.gym.config import PPOConfig
    from ppokit.lm.config import LMPPOConfig, RewardModelConfig, SFTConfig

    return {"train": PPOConfig, "sft": SFTConfig, "rm": RewardModelConfig, "ppo": LMPPOConfig}


def readme_block(text: str, name: str) -> str | None:
    """The table between a README's <!-- keys:NAME --> markers (None without them)."""
    match = re.search(rf"<!-- keys:{name} -->\n(.*?)\n?<!-- /keys:{name} -->", text, re.S)
    return match.group(1).strip() if match else None


def update_readme(path: Path) -> bool:
    """Rewrite each <!-- keys:NAME --> ... <!-- /keys:NAME --> block of ``path``; True when something changed."""
    text = path.read_text()
    updated = text
    for name, cls in config_classes().items():
        pattern = re.compile(rf"(<!-- keys:{name} -->\n)(?:.*?\n)?(<!-- /keys:{name} -->)", re.S)
        updated = pattern.sub(lambda match, cls=cls: match.group(1) + markdown_table(cls) + "\n" + match.group(2), updated)
    if updated != text:
        path.write_text(updated)
    return updated != text


if __name__ == "__main__":
    changed = update_readme(Path(sys.argv[1] if len(sys.argv) > 1 else "README.md"))
    print("README tables rewritten" if changed else "README tables already current")
