"""How a question and its passages become the token ids a chat model sees.

The prompt is built from separately tokenized pieces (system prefix, one piece per passage, question
suffix) that are concatenated as ids. The cached-KV path encodes the same pieces, so the sequential and
cached paths see identical tokens.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from haystack import Document
from transformers import PreTrainedTokenizerBase

from ragpress.base.schema import PRUNED_TEXT

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
    pruned = (document.meta or {}).get(PRUNED_TEXT)
    return pruned if pruned is not None else (document.content or "")


def order_for_generation(documents: list[Document]) -> list[Document]:
    """Most relevant passage last, nearest the question (models use the ends of a context best)."""
    return list(reversed(documents))


def passages_for_prompt(documents: list[Document], size: Callable[[str], int], budget: int) -> list[str]:
    """The passage texts a prompt shows: the most relevant that fit ``budget`` (as measured by ``size``),
    in generation order. The most relevant one is always kept, even when it alone exceeds the budget."""
    kept: list[Document] = []
    used = 0
    for document in documents:  # most relevant first
        cost = size(passage_text(document))
        if kept and used + cost > budget:
            break
        kept.append(document)
        used += cost
    return [passage_text(d) for d in order_for_generation(kept)]


# The text frame around the passages, shared by the token-level prompt below and by generators that send
# text (a remote server): both paths show a model exactly the same words.
PASSAGES_HEADER = "Passages:\n"


def passage_blocks(passages: list[str]) -> list[str]:
    """The passages (in generation order) as the prompt shows them, each labelled with its relevance rank: the most
    relevant, shown last, is [1]. A budget keeps the most relevant passages, so a label names the same passage however
    many were kept, and a response numbers its sources (most relevant first) as the model saw them."""
    return [f"[{len(passages) - i}] {text.strip()}\n" for i, text in enumerate(passages)]


def question_line(query: str) -> str:
    return f"\nQuestion: {query}"


def user_message(query: str, passages: list[str]) -> str:
    """The user turn of a chat request: the passages (already in generation order), then the question."""
    return PASSAGES_HEADER + "".join(passage_blocks(passages)) + question_line(query)


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
        prefix_text = before + PASSAGES_HEADER
        suffix_text = question_line(query) + after
    else:
        prefix_text = f"{system_prompt}\n\n{PASSAGES_HEADER}"
        suffix_text = question_line(query) + "\nAnswer:"
    encode = lambda text: tokenizer.encode(text, add_special_tokens=False)  # noqa: E731
    prefix = encode(prefix_text)
    if tokenizer.bos_token_id is not None and not tokenizer.chat_template:
        prefix = [tokenizer.bos_token_id, *prefix]
    return PromptPieces(
        prefix=prefix,
        passages=[encode(block) for block in passage_blocks(passages)],
        suffix=encode(suffix_text),
    )


def new_token_limit(requested: int | None, default: int) -> int:
    """How many tokens to generate: a run's ``max_new_tokens`` override, else the component's own."""
    limit = default if requested is None else requested
    if limit < 1:
        raise ValueError(f"max_new_tokens must be at least 1, not {limit}.")
    return limit
