#!/usr/bin/env python3
"""Renders a conversation with a tokenizer_config.json's own Jinja chat_template (jinja2, as transformers'
apply_chat_template does: trim_blocks, lstrip_blocks, raise_exception), the oracle of the chat template tests.

  render_chat_template.py --config tokenizer_config.json --messages messages.json [--generation-prompt]
prints the rendering, with the config's bos_token, to stdout.
"""
import argparse
import json
import sys

import jinja2


def raise_exception(message):
    raise jinja2.exceptions.TemplateError(message)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--config", required=True)
    ap.add_argument("--messages", required=True)
    ap.add_argument("--generation-prompt", action="store_true")
    a = ap.parse_args()
    with open(a.config) as f:
        cfg = json.load(f)
    with open(a.messages) as f:
        messages = json.load(f)
    env = jinja2.Environment(trim_blocks=True, lstrip_blocks=True)
    env.globals["raise_exception"] = raise_exception
    bos = cfg.get("bos_token")
    bos = bos.get("content") if isinstance(bos, dict) else bos
    text = env.from_string(cfg["chat_template"]).render(messages=messages, bos_token=bos or "",
                                                        add_generation_prompt=a.generation_prompt)
    sys.stdout.write(text)


if __name__ == "__main__":
    sys.exit(main())
