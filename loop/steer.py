"""`kotone-steer`: steer a running (or stopped) loop from the command line; it writes the steering files
under the artifacts folder directly (`tools/core/steering.py`), so it needs no token.

    kotone-steer "prefer more replay on warmth; leave the learning rate alone"   # add an operator note
    kotone-steer --list                        # notes, pause / stop, winners waiting for approval
    kotone-steer --close 2 ["why"]             # close note 2
    kotone-steer --approve 5                   # approve mode: cycle 5's winner becomes champion
    kotone-steer --reject 5 "too slow"         # ... or not (the champion stays)
    kotone-steer --pause | --resume | --stop-after-cycle

The loop honours a pause or a stop at its next cycle boundary and says so; each cycle's plan replies to
every open note (decision log). A note can ask for a lever, a focus dim or a stop; it can never relax the
gate. Exit 2 on a request that cannot apply (unknown note, no pending winner, ...).
"""

from __future__ import annotations

import argparse
import getpass
import sys

from tools.core import steering


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    from tools.core.cli import command_parser

    parser = command_parser(
        "loop.steer",
        "kotone-steer",
        description=__doc__.split("\n\n")[0],
        epilog="Artifacts folder: KOTONE_ARTIFACTS (default ./artifacts).",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("note", nargs="?", help="an operator note to add")
    which = parser.add_mutually_exclusive_group()
    which.add_argument("--list", action="store_true", help="show notes, pause / stop and pending winners")
    which.add_argument(
        "--close", type=int, metavar="N", help="close operator note N (the note text is the why)"
    )
    which.add_argument("--approve", type=int, metavar="CYCLE", help="approve the pending winner of CYCLE")
    which.add_argument(
        "--reject", type=int, metavar="CYCLE", help="reject the pending winner of CYCLE (note = why)"
    )
    which.add_argument("--pause", action="store_true", help="hold the loop before its next cycle")
    which.add_argument("--resume", action="store_true", help="let a paused loop go on")
    which.add_argument("--stop-after-cycle", action="store_true", help="end the run after its current cycle")
    return parser.parse_args(argv)


def who() -> str:
    try:
        return f"{getpass.getuser()} (kotone-steer)"
    except (KeyError, OSError):
        return "kotone-steer"


def show() -> str:
    lines = []
    control = steering.read_control()
    state = "paused" if control.paused else "running"
    if control.stop_after_cycle:
        state += ", stops after the current cycle"
    lines.append(
        f"loop: {state}"
        + (f" (set by {control.changed_by} at {control.changed_at})" if control.changed_at else "")
    )
    for approval in steering.pending_approvals():
        lines.append(
            f"cycle {approval.cycle}: winner {approval.candidate} waits for approval since {approval.pending_since}"
            + (f" (rejected after {approval.timeout_s:g} s unanswered)" if approval.timeout_s else "")
        )
    notes = steering.read_notes()
    if not notes:
        lines.append("no operator notes")
    for note in notes:
        closed = f" — closed {note.closed_at} by {note.closed_by}" + (
            f": {note.close_reason}" if note.close_reason else ""
        )
        lines.append(
            f"[{note.id}] {note.status}: {note.text} ({note.added_by}, {note.added_at}){closed if note.status == 'closed' else ''}"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.note and (args.list or args.pause or args.resume or args.stop_after_cycle):
        print("error: a note goes alone, or as the why of --close / --reject", file=sys.stderr)
        return 2
    try:
        if args.list:
            print(show())
        elif args.close is not None:
            note = steering.close_note(args.close, who(), args.note or "")
            print(f"closed note {note.id}: {note.text}")
        elif args.approve is not None:
            approval = steering.decide_approval(args.approve, True, who(), args.note or "")
            print(f"cycle {approval.cycle}: winner {approval.candidate} approved; the loop promotes it now")
        elif args.reject is not None:
            if not args.note:
                print('error: say why: kotone-steer --reject CYCLE "why"', file=sys.stderr)
                return 2
            approval = steering.decide_approval(args.reject, False, who(), args.note)
            print(f"cycle {approval.cycle}: winner {approval.candidate} rejected; the champion stays")
        elif args.pause:
            steering.set_control(who(), paused=True)
            print("pause asked: the loop holds before its next cycle (kotone-steer --resume to go on)")
        elif args.resume:
            steering.set_control(who(), paused=False)
            print("resume asked: a paused loop goes on with its next cycle")
        elif args.stop_after_cycle:
            steering.set_control(who(), stop_after_cycle=True)
            print("stop asked: the run ends after its current cycle")
        elif args.note:
            note = steering.add_note(args.note, who())
            print(
                f"note {note.id} added: the next cycle's plan replies to it (kotone-steer --close {note.id} to drop it)"
            )
        else:
            print(
                'error: give a note ("...") or one of --list, --close, --approve, --reject, --pause, --resume, '
                "--stop-after-cycle",
                file=sys.stderr,
            )
            return 2
    except steering.SteeringError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
