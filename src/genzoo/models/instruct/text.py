"""A word tokenizer and a small Transformer text encoder of our own, for the `instruct` editor's instructions.

InstructPix2Pix conditions on a pretrained CLIP text encoder; genzoo downloads no language model, so the
editor trains this one with its U-Net. Instructions are short imperative sentences, so words are the tokens:

- `Tokenizer`: lower-cases, splits into runs of letters or digits, and maps each word to its index in a fixed
  vocabulary (index 1, `<unk>`, for a word it has never seen; 0 is padding). The vocabulary is the training
  phrasings' words (`edits.vocabulary_text`), so the held-out phrasings' new words really are unknown.
- `TextEncoder`: each token is its word embedding (zero for `<unk>`) plus the mean embedding of its hashed
  character trigrams (Bojanowski et al. 2017, fastText), so that an unknown word such as "anticlockwise" still
  lands near the known "counterclockwise"; learned positions; a pre-norm Transformer encoder (Vaswani et al.
  2017); a masked mean over the tokens, projected to the size the U-Net's embedding has.
"""

from __future__ import annotations

import re
import zlib

import torch
from torch import nn

PAD, UNK = "<pad>", "<unk>"
WORD = re.compile(r"[a-z]+|[0-9]+")


def words(text: str) -> list[str]:
    """The words of `text`: lower-cased runs of letters or of digits ("Turn it 90°!" -> turn, it, 90)."""
    return WORD.findall(text.lower())


def build_vocabulary(texts: list[str]) -> tuple[str, ...]:
    """<pad>, <unk>, then every word of `texts` once, sorted (the same texts give the same indices)."""
    return (PAD, UNK, *sorted({w for text in texts for w in words(text)}))


def trigram_buckets(word: str, n_buckets: int) -> list[int]:
    """Bucket indices of the character trigrams of "<word>" (crc32, stable across runs and machines)."""
    padded = f"<{word}>"
    return [zlib.crc32(padded[i:i + 3].encode()) % n_buckets for i in range(len(padded) - 2)]


class Tokenizer:
    """Words <-> indices over a fixed vocabulary; unknown words become `<unk>` (index 1), never an error."""

    def __init__(self, vocabulary: tuple[str, ...], max_tokens: int, n_buckets: int):
        if vocabulary[:2] != (PAD, UNK):
            raise ValueError(f"vocabulary must start with {PAD!r}, {UNK!r}; got {vocabulary[:2]!r}")
        self.vocabulary, self.max_tokens, self.n_buckets = vocabulary, max_tokens, n_buckets
        self.index = {w: i for i, w in enumerate(vocabulary)}

    def encode(self, text: str) -> list[int]:
        """Word indices of `text`, at most max_tokens (a longer instruction is cut)."""
        return [self.index.get(w, 1) for w in words(text)][: self.max_tokens]

    def decode(self, ids: list[int]) -> str:
        return " ".join(self.vocabulary[i] for i in ids if i != 0)

    def unknown(self, text: str) -> list[str]:
        """The words of `text` that are not in the vocabulary."""
        return [w for w in words(text) if w not in self.index]

    def __call__(self, texts: list[str], device: torch.device | str = "cpu") -> dict[str, torch.Tensor]:
        """A batch: "ids" (B, L) word indices (0 padding), "trigrams" (B, L, G) bucket indices + 1 (0 padding),
        L the longest instruction's length (at least 1), G the most trigrams of a word."""
        tokens = [words(text)[: self.max_tokens] for text in texts]
        length = max([len(t) for t in tokens] + [1])
        grams = [[trigram_buckets(w, self.n_buckets) for w in t] for t in tokens]
        width = max([len(g) for row in grams for g in row] + [1])
        ids = torch.zeros(len(texts), length, dtype=torch.long)
        trigrams = torch.zeros(len(texts), length, width, dtype=torch.long)
        for b, (row, row_grams) in enumerate(zip(tokens, grams)):
            ids[b, : len(row)] = torch.tensor([self.index.get(w, 1) for w in row], dtype=torch.long)
            for j, g in enumerate(row_grams):
                trigrams[b, j, : len(g)] = torch.tensor(g) + 1
        return {"ids": ids.to(device), "trigrams": trigrams.to(device)}


class TextEncoder(nn.Module):
    """Token batches -> (B, out_dim): word + trigram embeddings, positions, Transformer layers, masked mean."""

    def __init__(self, vocab_size: int, n_buckets: int, max_tokens: int, dim: int, layers: int, heads: int,
                 out_dim: int):
        super().__init__()
        self.words = nn.Embedding(vocab_size, dim, padding_idx=0)
        self.trigrams = nn.Embedding(n_buckets + 1, dim, padding_idx=0)
        self.position = nn.Parameter(torch.zeros(max_tokens, dim))
        nn.init.normal_(self.position, std=0.02)
        layer = nn.TransformerEncoderLayer(dim, heads, 4 * dim, dropout=0.0, activation="gelu", batch_first=True,
                                           norm_first=True)
        self.layers = nn.TransformerEncoder(layer, layers, enable_nested_tensor=False)
        self.norm = nn.LayerNorm(dim)
        self.out = nn.Linear(dim, out_dim)

    def forward(self, ids: torch.Tensor, trigrams: torch.Tensor) -> torch.Tensor:
        """ids (B, L), trigrams (B, L, G) from `Tokenizer.__call__` -> (B, out_dim)."""
        present = ids != 0  # (B, L)
        gram_mask = (trigrams != 0).unsqueeze(-1).float()  # (B, L, G, 1)
        gram_mean = (self.trigrams(trigrams) * gram_mask).sum(2) / gram_mask.sum(2).clamp_min(1)  # (B, L, dim)
        # <unk> adds no word embedding: an unknown word is its trigrams only
        h = self.words(ids) * (ids != 1).unsqueeze(-1) + gram_mean + self.position[: ids.shape[1]]
        empty = ~present.any(1)  # an instruction without a word still attends to its first (padding) slot
        mask = present | (empty[:, None] & (torch.arange(ids.shape[1], device=ids.device) == 0))
        h = self.norm(self.layers(h, src_key_padding_mask=~mask))  # (B, L, dim)
        pooled = (h * mask.unsqueeze(-1)).sum(1) / mask.sum(1, keepdim=True)  # (B, dim)
        return self.out(pooled)


# ---------------------------------------------------------------------------- word noise (training only)

LETTERS = "abcdefghijklmnopqrstuvwxyz"


def made_up_word(generator: torch.Generator | None = None) -> str:
    """A random string of 3 to 9 letters: a word the vocabulary does not hold, with random trigrams."""
    length = int(torch.randint(3, 10, (), generator=generator))
    return "".join(LETTERS[i] for i in torch.randint(0, len(LETTERS), (length,), generator=generator).tolist())


def corrupt(texts: list[str], p: float, generator: torch.Generator | None = None) -> list[str]:
    """Word noise, so that the encoder learns to read an instruction by its telling words and to shrug off words
    it has never seen (a held-out phrasing's): each word, with probability p, is dropped or replaced by a made-up
    word (even odds), and with probability p a made-up word is inserted at a random place. An instruction keeps
    at least one of its own words. The texts come back as lower-case words joined by spaces."""
    out = []
    for text in texts:
        kept = words(text)
        u = torch.rand(len(kept), generator=generator).tolist()
        coin = torch.rand(len(kept), generator=generator).tolist()
        noisy = [w if r >= p else made_up_word(generator) if c < 0.5 else None for w, r, c in zip(kept, u, coin)]
        if kept and all(w is None or w not in kept for w in noisy):  # nothing of its own left: keep one word
            i = int(torch.randint(0, len(kept), (), generator=generator))
            noisy[i] = kept[i]
        noisy = [w for w in noisy if w is not None]
        if float(torch.rand((), generator=generator)) < p:
            noisy.insert(int(torch.randint(0, len(noisy) + 1, (), generator=generator)), made_up_word(generator))
        out.append(" ".join(noisy))
    return out


def hide_words(batch: dict[str, torch.Tensor], p: float, generator: torch.Generator | None = None) -> dict:
    """A token batch with each known word turned into `<unk>` with probability p, its trigrams kept, so that the
    trigram embeddings learn to carry a word's meaning alone (what an unknown word such as "anticlockwise" has)."""
    ids = batch["ids"]
    hide = (torch.rand(ids.shape, generator=generator) < p).to(ids.device) & (ids > 1)
    return {**batch, "ids": torch.where(hide, torch.ones_like(ids), ids)}
