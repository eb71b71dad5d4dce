"""The prompt policy, one for every backend (README, "Prompt policy").

The harness turns each prompt into the exact text every engine receives, and every engine receives it raw:
- "raw": the prompt as written.
- "chat": the GGUF's own chat template (Jinja, `tokenizer.chat_template`) rendered by the harness with one user
  message and the generation prompt, so that Ollama's Go templates and llama.cpp's built-in templates play no part.
Each engine then tokenizes that text the way llama.cpp does: a BOS token only where the GGUF asks for one
(`tokenizer.ggml.add_bos_token`), special tokens such as `<|im_start|>` recognised. Every run records its prompt token
count, so a difference between engines would show.
"""

from __future__ import annotations

from . import EdgebenchError
from .defaults import PROMPTS as PLAN_PROMPTS  # noqa: F401 - the CLI's and the benchmarks' name for them

PROMPT_FORMATS = ("raw", "chat")


def render(prompt: str, prompt_format: str, chat_template: str | None, bos_token: str = "",
           eos_token: str = "") -> str:
    if prompt_format == "raw":
        return prompt
    if prompt_format != "chat":
        raise EdgebenchError(f"unknown prompt format {prompt_format!r}; use one of {', '.join(PROMPT_FORMATS)}")
    if not chat_template:
        raise EdgebenchError("prompt format 'chat' needs a chat template in the GGUF (tokenizer.chat_template), "
                             "and this model has none; use prompt format 'raw'")
    import jinja2.sandbox

    env = jinja2.sandbox.ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True)
    # A leading BOS in the template would be added a second time by the tokenizer: it is dropped here and the
    # tokenizer's own add_bos rule decides, the same for every engine.
    text = env.from_string(chat_template).render(
        messages=[{"role": "user", "content": prompt}], add_generation_prompt=True,
        bos_token=bos_token, eos_token=eos_token)
    if bos_token and text.startswith(bos_token):
        text = text[len(bos_token):]
    return text


def gguf_chat_template(gguf_path) -> tuple[str | None, str, str]:
    """(template, bos text, eos text) of a GGUF file."""
    from .gguf_info import chat_template

    return chat_template(gguf_path)
