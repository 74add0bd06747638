"""Dense embedders for chunks and queries, sharing one loaded sentence-transformers model per process."""

from __future__ import annotations

from dataclasses import replace
from typing import Any, ClassVar

from haystack import Document, component, default_from_dict, default_to_dict

from ragpress.base.devices import check_device
from ragpress.base.model_loading import sentence_transformer
from ragpress.base.roles import Role


class _Embedder:
    role: ClassVar[Role] = Role.EMBEDDER

    def __init__(self, model: str = "all-MiniLM-L6-v2", batch_size: int = 32, normalize: bool = True,
                 device: str = "auto") -> None:
        """
        :param model: a registry model's name, a Hugging Face id in the local cache, or a directory.
        :param batch_size: texts encoded per forward pass.
        :param normalize: scale vectors to unit length (cosine similarity as a dot product).
        :param device: ``auto`` (a GPU when present, else the CPU), ``cpu``, ``cuda`` or ``cuda:N``.
        """
        if batch_size < 1:
            raise ValueError("batch_size must be at least 1.")
        if not model:
            raise ValueError("model must name a registry model, a Hugging Face id or a directory.")
        self.model = model
        self.batch_size = batch_size
        self.normalize = normalize
        self.device = check_device(device)
        self._model: Any = None

    def warm_up(self) -> None:
        if self._model is None:
            self._model = sentence_transformer(self.model, self.device)

    def to_dict(self) -> dict[str, Any]:
        return default_to_dict(self, model=self.model, batch_size=self.batch_size, normalize=self.normalize,
                               device=self.device)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Any:
        return default_from_dict(cls, data)

    def encode(self, texts: list[str]) -> list[list[float]]:
        self.warm_up()
        if not texts:
            return []
        vectors = self._model.encode(texts, batch_size=self.batch_size, normalize_embeddings=self.normalize,
                                     convert_to_numpy=True, show_progress_bar=False)
        return vectors.tolist()


@component
class DocumentEmbedder(_Embedder):
    """Adds a dense vector to every Document that lacks one (late/situated chunks already have theirs).

    Usage:
        >>> DocumentEmbedder(model="all-MiniLM-L6-v2").run(documents=[Document(content="Paris")])
    """

    @component.output_types(documents=list[Document])
    def run(self, *, documents: list[Document]) -> dict[str, list[Document]]:
        """
        :param documents: units to embed; one that already has a vector keeps it.
        :returns: ``documents``, each with its ``embedding``.
        """
        todo = [i for i, d in enumerate(documents) if d.embedding is None]
        vectors = self.encode([documents[i].content or "" for i in todo])
        embedded = list(documents)
        for index, vector in zip(todo, vectors, strict=True):
            embedded[index] = replace(documents[index], embedding=vector)
        return {"documents": embedded}


@component
class QueryEmbedder(_Embedder):
    """Embeds a query string.

    Usage:
        >>> QueryEmbedder().run(text="Where is the Eiffel Tower?")["embedding"][:3]
    """

    @component.output_types(embedding=list[float])
    def run(self, *, text: str) -> dict[str, list[float]]:
        """
        :param text: the query.
        :returns: ``embedding``, the query's vector.
        """
        if not isinstance(text, str):
            raise TypeError("QueryEmbedder expects a string.")
        return {"embedding": self.encode([text])[0]}
