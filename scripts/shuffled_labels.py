"""Make a copy of a dataset whose training labels are shuffled across rows (valid/test untouched).

Used to check that the gate rejects noise: a student trained on shuffled labels can at best learn the
constant, and the gate must not promote it.

    python scripts/shuffled_labels.py --data real --out artifacts/noise-real
    KOTONE_ARTIFACTS=artifacts/noise-run python -m loop.run --data artifacts/noise-real --cycles 3
"""

from __future__ import annotations

import argparse
import random
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from tools.data.dataset import load_dataset, write_jsonl  # noqa: E402


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", default="real", help="'real', 'shipped' or a folder")
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    data = load_dataset(args.data)
    targets = [row.target for row in data.train]
    random.Random(args.seed).shuffle(targets)
    shuffled = [
        row.model_copy(update={"target": t, "origin": "shuffled"})
        for row, t in zip(data.train, targets, strict=True)
    ]
    write_jsonl(args.out / "train.jsonl", shuffled)
    write_jsonl(args.out / "valid.jsonl", data.valid)
    if data.test:
        write_jsonl(args.out / "test.jsonl", data.test)
    print(f"{len(shuffled)} training rows with shuffled labels written to {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
