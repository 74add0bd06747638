"""How a question and its passages become the token ids a chat model sees.

The prompt is built from separately tokenized pieces (system prefix, one piece per passage, question
suffix) that are concatenated as ids. The cached-KV path encodes the same pieces, so the sequential and
cached paths see identical tokens.
"""

from __future__ import annotations

from dataclasses import dataclass

from haystack import Document
from transformers import PreTrainedTokenizerBase

DEFAULT_SYSTEM_PROMPT = (
    "You are a helpful assistant. Answer the question using only the passages given. "
    "Answer in one short sentence."
)


@dataclass(frozen=True)
class PromptPieces:
    """Token ids of the prompt, split where a cache can be reused."""

    prefix: list[int]
    passages: list[list[int]]
    suffix: list[int]

    def sequential(self) -> list[int]:
        ids = list(self.prefix)
        for passage in self.passages:
            ids.extend(passage)
        ids.extend(self.suffix)
        return ids


def passage_text(document: Document) -> str:
    """The text the generator reads: the pruned text when the pruner ran, else the whole content."""
    pruned = (document.meta or {}).get("pruned_text")
    return pruned if pruned is not None else (document.content or "")


def order_for_generation(documents: list[Document]) -> list[Document]:
    """Most relevant passage last, nearest the question (models use the ends of a context best)."""
    return list(reversed(documents))


def _chat_frame(tokenizer: PreTrainedTokenizerBase, system_prompt: str) -> tuple[str, str]:
    """Split the model's chat template around the user message into a prefix and a suffix string."""
    marker = "\x00RAGPRESS_USER\x00"
    rendered = tokenizer.apply_chat_template(
        [{"role": "system", "content": system_prompt}, {"role": "user", "content": marker}],
        tokenize=False,
        add_generation_prompt=True,
    )
    if not isinstance(rendered, str) or marker not in rendered:
        raise ValueError("The tokenizer's chat template did not render the user message.")
    before, after = rendered.split(marker, 1)
    return before, after


def build_prompt(
    tokenizer: PreTrainedTokenizerBase,
    query: str,
    passages: list[str],
    system_prompt: str = DEFAULT_SYSTEM_PROMPT,
) -> PromptPieces:
    """Tokenize the prompt in pieces; a model without a chat template gets a plain text frame."""
    if tokenizer.chat_template:
        before, after = _chat_frame(tokenizer, system_prompt)
        prefix_text = before + "Passages:\n"
        suffix_text = f"\nQuestion: {query}" + after
    else:
        prefix_text = f"{system_prompt}\n\nPassages:\n"
        suffix_text = f"\nQuestion: {query}\nAnswer:"
    encode = lambda text: tokenizer.encode(text, add_special_tokens=False)  # noqa: E731
    prefix = encode(prefix_text)
    if tokenizer.bos_token_id is not None and not tokenizer.chat_template:
        prefix = [tokenizer.bos_token_id, *prefix]
    return PromptPieces(
        prefix=prefix,
        passages=[encode(f"[{i + 1}] {text.strip()}\n") for i, text in enumerate(passages)],
        suffix=encode(suffix_text),
    )
