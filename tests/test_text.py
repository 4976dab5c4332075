"""The instruct editor's tokenizer and text encoder: round trip, unknown words, padding that changes nothing;
the word noise of training."""

from __future__ import annotations

import pytest
import torch

from genzoo.models.instruct import edits
from genzoo.models.instruct.text import (
    TextEncoder,
    Tokenizer,
    build_vocabulary,
    corrupt,
    hide_words,
    trigram_buckets,
    words,
)


@pytest.fixture(scope="module")
def tokenizer():
    return Tokenizer(build_vocabulary(edits.vocabulary_text()), max_tokens=24, n_buckets=256)


def test_words_and_the_round_trip(tokenizer):
    assert words("Rotate it 90°, then MIRROR it!") == ["rotate", "it", "90", "then", "mirror", "it"]
    for text in edits.vocabulary_text()[::7]:
        ids = tokenizer.encode(text)
        assert 1 not in ids and tokenizer.decode(ids) == " ".join(words(text))
    assert build_vocabulary(["b a", "a c"]) == ("<pad>", "<unk>", "a", "b", "c")


def test_unknown_words_are_unk_not_an_error(tokenizer):
    assert tokenizer.unknown("give it a quarter turn anticlockwise") == ["give", "anticlockwise"]
    ids = tokenizer.encode("give it a quarter turn anticlockwise")
    assert ids[0] == 1 and ids[-1] == 1 and tokenizer.decode(ids) == "<unk> it a quarter turn <unk>"
    batch = tokenizer(["zzz qqq", ""])
    assert batch["ids"].tolist() == [[1, 1], [0, 0]]
    assert (batch["trigrams"][0] > 0).any() and (batch["trigrams"][1] == 0).all()
    assert len(tokenizer.encode("a " * 40)) == 24  # cut at max_tokens
    # the unknown word shares character trigrams with a known one
    shared = set(trigram_buckets("anticlockwise", 256)) & set(trigram_buckets("counterclockwise", 256))
    assert len(shared) >= 6


def test_padding_and_batch_company_change_nothing(tokenizer):
    torch.manual_seed(0)
    encoder = TextEncoder(len(tokenizer.vocabulary), 256, 24, dim=16, layers=2, heads=2, out_dim=12).eval()
    texts = ["mirror it", "first rotate it 180 degrees, then make the strokes thinner", "qqq", ""]
    together = encoder(**tokenizer(texts))
    assert together.shape == (4, 12) and torch.isfinite(together).all()
    for i, text in enumerate(texts):
        alone = encoder(**tokenizer([text]))
        torch.testing.assert_close(alone[0], together[i], rtol=1e-5, atol=1e-5)
    # positions make word order count; an unknown word is not the same as no word
    a, b = encoder(**tokenizer(["rotate it then mirror it", "mirror it then rotate it"]))
    assert not torch.allclose(a, b, atol=1e-4)
    assert not torch.allclose(together[2], together[3], atol=1e-4)


def test_an_unknown_word_is_its_trigrams_alone(tokenizer):
    """The module's contract: <unk> adds no word embedding, so two unknown words differ by their spelling only,
    and the <unk> row of the word table is never read."""
    torch.manual_seed(0)
    encoder = TextEncoder(len(tokenizer.vocabulary), 256, 24, dim=16, layers=1, heads=2, out_dim=12).eval()
    texts = ["give it a quarter turn anticlockwise", "zzz", "mirror it"]
    before = encoder(**tokenizer(texts))
    with torch.no_grad():
        encoder.words.weight[1] = torch.randn(16) * 10  # the <unk> row
    torch.testing.assert_close(encoder(**tokenizer(texts)), before)
    # an unknown word's first layer input is the mean of its trigrams' embeddings plus its position
    batch = tokenizer(["anticlockwise"])
    grams = torch.tensor(trigram_buckets("anticlockwise", 256)) + 1
    h = encoder.trigrams.weight[grams].mean(0) + encoder.position[0]
    captured = {}
    encoder.layers.register_forward_pre_hook(lambda module, args, kwargs: captured.update(h=args[0]), with_kwargs=True)
    encoder(**batch)
    torch.testing.assert_close(captured["h"][0, 0], h)


def test_word_noise_drops_replaces_and_inserts_at_its_rate(tokenizer):
    texts = [t for t in edits.vocabulary_text()[::3]][:2000]
    assert corrupt(texts, 0.0) == [" ".join(words(t)) for t in texts]  # no noise: the words as they were
    p = 0.2
    noisy = corrupt(texts, p, torch.Generator().manual_seed(0))
    assert noisy == corrupt(texts, p, torch.Generator().manual_seed(0))  # seeded
    n_words = sum(len(words(t)) for t in texts)
    own = sum(sum(w in words(t) for w in words(n)) for t, n in zip(texts, noisy))
    made_up = sum(len(tokenizer.unknown(n)) for n in noisy)  # the vocabulary never holds a made-up word
    # each word: kept 1 - p, dropped p / 2, replaced p / 2; one word inserted into a share p of the texts
    assert abs(own / n_words - (1 - p)) < 0.02
    assert abs(made_up / n_words - (p / 2 + p * len(texts) / n_words)) < 0.02
    # however heavy the noise, an instruction keeps one of its own words
    for t, n in zip(texts, corrupt(texts, 0.9, torch.Generator().manual_seed(1))):
        assert set(words(n)) & set(words(t))


def test_hide_words_turns_known_words_into_unk_and_keeps_their_trigrams(tokenizer):
    batch = tokenizer(["rotate it 90 degrees to the left zzzq"] * 500)
    hidden = hide_words(batch, 0.3, torch.Generator().manual_seed(0))
    assert torch.equal(hidden["trigrams"], batch["trigrams"])
    changed = hidden["ids"] != batch["ids"]
    assert (hidden["ids"][changed] == 1).all() and not changed[:, -1].any()  # "zzzq" was <unk> already
    assert abs(changed[:, :-1].float().mean().item() - 0.3) < 0.02
