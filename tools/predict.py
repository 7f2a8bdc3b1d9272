"""`python -m tools.predict`: the current champion answers requests, one JSON line each.

python -m tools.predict "a calm song for a rainy evening"      # one line on stdout
python -m tools.predict --file requests.jsonl --out preds.jsonl  # a batch (rows need only request_text)
python -m tools.predict --file - < requests.jsonl                # the batch from stdin

Each line: request_text, prediction (the six parameters as integers 0..10), values (the raw outputs),
json_valid, served_by, latency_ms, novelty (how unlike the champion's training requests it is, 0..1). In a
batch, every other field of the input row is kept on its line and the batch's novelty profile goes to stderr;
a bad row is reported on stderr as FILE:LINE and skipped, the others are answered, and the exit code is 2.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from tools.serving.champion import RequestBatch

STDIN = "-"


def _batch(file: str) -> RequestBatch:
    from tools.serving.champion import parse_requests, read_requests

    if file == STDIN:
        return parse_requests(sys.stdin.buffer.read(), "<stdin>")
    return read_requests(Path(file))


def main(argv: list[str] | None = None) -> int:
    """Exit 0 all answered, 1 no champion to answer with, 2 bad input (the good rows are still answered)."""
    from tools.core.cli import command_parser

    parser = command_parser(
        "tools.predict",
        "kotone-predict",
        description="Answer requests with the current champion (artifacts/registry/champion.json).",
        epilog="KOTONE_ARTIFACTS: the artifacts root holding registry/champion.json (default ./artifacts).",
    )
    parser.add_argument("text", nargs="?", help="one request text")
    parser.add_argument(
        "--file", metavar="FILE", help="JSONL file of requests (each a row with request_text); - reads stdin"
    )
    parser.add_argument("--out", type=Path, help="write the batch's lines here (default stdout)")
    parser.add_argument("--batch-size", type=int, default=16)
    args = parser.parse_args(argv)
    if (args.text is None) == (args.file is None):
        parser.error("give either one request text or --file")
    if args.out and not args.file:
        parser.error("--out goes with --file")
    # Imported after parsing: `--help` and a bad argument answer without loading the serving code.
    from tools.serving.champion import (
        ChampionPredictor,
        ChampionUnavailable,
        RequestBatch,
        RequestFileError,
        batch_novelty,
        request_problem,
    )

    if args.text is not None:
        problem = request_problem(args.text)
        if problem:
            parser.error(problem.replace("request_text", "the request text", 1))

    try:
        batch = (
            _batch(args.file) if args.file else RequestBatch(rows=[{"request_text": args.text}], problems=[])
        )
    except RequestFileError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    for problem in batch.problems:
        print(f"error: {problem}", file=sys.stderr)
    if batch.rows:
        try:
            predictor = ChampionPredictor.current()
        except ChampionUnavailable as exc:
            print(f"error: {exc}", file=sys.stderr)
            return 1
        answers = predictor.predict([row["request_text"] for row in batch.rows], batch_size=args.batch_size)
        lines = [
            json.dumps({**row, **answer.model_dump()}, ensure_ascii=False)
            for row, answer in zip(batch.rows, answers, strict=True)
        ]
        if args.out:
            from tools.core.atomic import atomic_write_text

            atomic_write_text(args.out, "".join(line + "\n" for line in lines))
            print(f"{len(lines)} predictions written to {args.out}", file=sys.stderr)
        else:
            print("\n".join(lines))
        profile = batch_novelty(answers)
        if args.file and profile is not None:
            print(f"novelty: {profile.sentence()}", file=sys.stderr)
    if batch.problems:
        print(f"{len(batch.problems)} request line(s) skipped, {len(batch.rows)} answered", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
