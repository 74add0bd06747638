"""Write the dev shares of the shared QA sets as files `ragpress eval` reads, so what it reports was never trained on.

XQuAD's and SQuAD's dev articles (the article-level split fixed in ragpress.training.data) go out in SQuAD JSON;
SQuAD keeps SQuAD 2.0's unanswerable questions of those articles. HotpotQA dev is dev as a whole: copy its file.
`squad_calibration` and `xquad_calibration` hold the calibration articles (train-split articles no training step
reads), where the default pipeline's thresholds are chosen.

    python -m ragpress.bench.dev_eval_sets --out /tmp/eval
    ragpress eval --data /tmp/eval/squad_dev.json --format squad --pipeline plain --pipeline query --limit 100
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from ragpress.training import data

SQUAD_FILES = ["squad/squad2_dev.json", "squad/squad11_dev_other_articles.json", "squad/squad2_train_head.json"]
SOURCES = {"xquad_dev": ("xquad", ["xquad_en/xquad.en.json"], True),
           "squad_dev": ("squad", SQUAD_FILES, True),
           "squad_calibration": ("squad", SQUAD_FILES, False),
           "xquad_calibration": ("xquad", ["xquad_en/xquad.en.json"], False)}


def articles_of(dataset: str, files: list[Path], dev: bool) -> list[dict]:
    """The articles of ``files`` in ``dataset``'s dev split, or else in its calibration share."""
    def wanted(title: str) -> bool:
        return data.is_dev(dataset, title) if dev else \
            not data.is_dev(dataset, title) and data.is_calibration_key(dataset, title)

    return [a for file in files for a in json.loads(file.read_text())["data"] if wanted(a["title"])]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, default=None, help="the shared datasets (default ../shared/datasets)")
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args()
    root = args.data or data.default_root()
    args.out.mkdir(parents=True, exist_ok=True)
    for name, (dataset, files, dev) in SOURCES.items():
        articles = articles_of(dataset, [root / f for f in files], dev)
        (args.out / f"{name}.json").write_text(json.dumps({"version": "dev", "data": articles}))
        questions = sum(len(p["qas"]) for a in articles for p in a["paragraphs"])
        print(f"{name}: {len(articles)} articles, {questions} questions -> {args.out / name}.json")


if __name__ == "__main__":
    main()
