#!/usr/bin/env python3
"""Writes tests/fixtures/rouge/pairs.jsonl: prediction/target pairs scored by Google's
`rouge-score` package (PyPI), the reference for wenhui's ROUGE (src/eval/rouge.rs).

  python3 -m venv /tmp/venv-rouge && /tmp/venv-rouge/bin/pip install rouge-score
  /tmp/venv-rouge/bin/python scripts/make-rouge-fixture.py [../shared/data/poetry/tang_jintishi.jsonl]

Two tokenizations: `default` (rouge-score's own: lowercase, non-[a-z0-9] -> space, no stemmer)
on English pairs, and `chars` (a custom tokenizer: every non-whitespace character is a token, the
customary character-level ROUGE for Chinese) on pairs cut from Tang poems. Seeded: the same
output every run."""
import json
import random
import sys
from importlib.metadata import version

from rouge_score import rouge_scorer

WORDS = ("the a an cat dog sat on mat quick brown fox jumps over lazy river mountain moon light "
         "poem title spring autumn wind rain 2021 GLM model learns to write short summaries of news "
         "running runs ran beautiful Beautiful DOG Cat's well-known e-mail U.S. 3.14 x").split()


class Chars:
    """Character-level tokenizer for Chinese (the `tokenizer=` hook of RougeScorer)."""

    def tokenize(self, text):
        return [c for c in text if not c.isspace()]


def english(rng):
    n = rng.randint(0, 14)
    target = [rng.choice(WORDS) for _ in range(n)]
    pred = list(target)
    for _ in range(rng.randint(0, 6)):
        op = rng.random()
        if op < 0.3 and pred:
            del pred[rng.randrange(len(pred))]
        elif op < 0.6:
            pred.insert(rng.randint(0, len(pred)), rng.choice(WORDS))
        elif pred:
            pred[rng.randrange(len(pred))] = rng.choice(WORDS)
    punct = lambda ws: " ".join(ws) + rng.choice(["", ".", "!", " ...", "?"])
    return punct(pred), punct(target)


def chinese(rng, lines):
    target = rng.choice(lines)
    if rng.random() < 0.3:
        pred = rng.choice(lines)
    else:
        pred = list(target)
        for _ in range(rng.randint(0, 4)):
            if pred and rng.random() < 0.5:
                del pred[rng.randrange(len(pred))]
            else:
                pred.insert(rng.randint(0, len(pred)), rng.choice(rng.choice(lines)))
        pred = "".join(pred)
    if rng.random() < 0.1:
        pred = pred[:2] + " " + pred[2:]
    return pred, target


def main():
    data = sys.argv[1] if len(sys.argv) > 1 else "../shared/data/poetry/tang_jintishi.jsonl"
    lines = []
    with open(data, encoding="utf-8") as f:
        for i, line in enumerate(f):
            if i >= 400:
                break
            poem = json.loads(line)
            lines.append(poem["title"])
            lines.extend(s for s in poem["text"].replace("。", "，").split("，") if s)
    rng = random.Random(2021)
    types = ["rouge1", "rouge2", "rougeL"]
    scorers = {
        "default": rouge_scorer.RougeScorer(types, use_stemmer=False),
        "chars": rouge_scorer.RougeScorer(types, use_stemmer=False, tokenizer=Chars()),
    }
    pairs = [("default", *english(rng)) for _ in range(60)] + [("chars", *chinese(rng, lines)) for _ in range(60)]
    pairs += [("default", "", "a b"), ("default", "a b", ""), ("default", "", ""), ("chars", "春风", "秋月"), ("default", "!!!", "a")]
    with open("tests/fixtures/rouge/pairs.jsonl", "w", encoding="utf-8") as out:
        for tok, pred, target in pairs:
            s = scorers[tok].score(target, pred)
            row = {"tokenizer": tok, "prediction": pred, "target": target}
            for t in types:
                row[t] = {"precision": s[t].precision, "recall": s[t].recall, "fmeasure": s[t].fmeasure}
            out.write(json.dumps(row, ensure_ascii=False) + "\n")
    print(f"{len(pairs)} pairs, rouge-score {version('rouge-score')}")


if __name__ == "__main__":
    main()
