import pytest

from ragpress.generators import parallel_attention
from ragpress.generators.kv_context import KVContextBuilder
from ragpress.generators.kv_store import LocalKVStore

ARCHITECTURES = ["SmolLM2-135M-Instruct", "gemma-3-270m"]

DOCUMENT = (
    "The Eiffel Tower was finished in 1889 for the World's Fair. It stands in Paris on the Champ de Mars. "
    "Gustave Eiffel's engineering company designed and built it. Critics first called it an eyesore."
)
SPANS = [(0, 99), (100, len(DOCUMENT))]  # two chunks: two sentences each


@pytest.fixture
def builder_for(tmp_path):
    """A KV context builder over a fresh local store, with the parallel attention function enabled."""

    def make(model: str, quantization: str = "none") -> KVContextBuilder:
        builder = KVContextBuilder(model, LocalKVStore(tmp_path / "kv"), quantization)
        parallel_attention.enable(builder.lm)
        return builder

    return make
