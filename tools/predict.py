"""`python -m tools.predict`: the current champion answers requests, one JSON line each.

python -m tools.predict "a calm song for a rainy evening"      # one line on stdout
python -m tools.predict --file requests.jsonl --out preds.jsonl  # a batch (rows need only request_text)

Each line: request_text, prediction (the six parameters as integers 0..10), values (the raw outputs),
json_valid, served_by, latency_ms. In a batch, every other field of the input row is kept on its line.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m tools.predict",
        description="Answer requests with the current champion (artifacts/registry/champion.json).",
        epilog="KOTONE_ARTIFACTS: the artifacts root holding registry/champion.json (default ./artifacts).",
    )
    parser.add_argument("text", nargs="?", help="one request text")
    parser.add_argument("--file", type=Path, help="JSONL file of requests (each a row with request_text)")
    parser.add_argument("--out", type=Path, help="write the batch's lines here (default stdout)")
    parser.add_argument("--batch-size", type=int, default=16)
    args = parser.parse_args(argv)
    if (args.text is None) == (args.file is None):
        parser.error("give either one request text or --file")
    if args.out and not args.file:
        parser.error("--out goes with --file")
    if args.text is not None and not args.text.strip():
        parser.error("the request text is blank")
    # Imported after parsing: `--help` and a bad argument answer without loading the serving code.
    from tools.serving.champion import ChampionPredictor, ChampionUnavailable, RequestFileError, read_requests

    try:
        rows = read_requests(args.file) if args.file else [{"request_text": args.text}]
        predictor = ChampionPredictor.current()
    except (RequestFileError, ChampionUnavailable) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    answers = predictor.predict([row["request_text"] for row in rows], batch_size=args.batch_size)
    lines = [
        json.dumps({**row, **answer.model_dump()}, ensure_ascii=False)
        for row, answer in zip(rows, answers, strict=True)
    ]
    if args.out:
        from tools.core.atomic import atomic_write_text

        atomic_write_text(args.out, "".join(line + "\n" for line in lines))
        print(f"{len(lines)} predictions written to {args.out}", file=sys.stderr)
    else:
        print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
