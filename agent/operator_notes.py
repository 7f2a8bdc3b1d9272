"""What the rule planner can read in an operator note, and the reply every plan gives each open note.

A note is free text. The rule planner reads, clause by clause (split at `;`, `.`, new lines):

| in a clause                                              | the ask                                       |
|----------------------------------------------------------|-----------------------------------------------|
| `stop` / `halt` at its start, or "stop the run/loop"     | stop: the run ends after this cycle           |
| gate, threshold, margin, confidence, "promote anyway"... | relax the gate: never followed                |
| "leave X alone", "don't", "do not", "never", "avoid",    | avoid the levers that move X                  |
|   "no more", "not again", "keep X fixed"                 |                                               |
| otherwise a lever or a topic                             | prefer those levers                           |
| a dim by name (outside an avoid clause)                  | focus on it                                   |

Topics: "learning rate"/"lr" → lr-half, lr-double; rank → rank-up; epoch → more-epochs; layer/depth →
deeper; fold → more-folds; ordinal/head → ordinal; replay/augmentation/"more data" → more-data; teacher →
no-teacher; a lever's own name (`stack-cheap`, "lm only", ...) → that lever. A note may ask for a lever, a
focus or a stop; nothing in a note reaches the gate's settings.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

from pydantic import BaseModel

from tools.core.contracts import CandidateSpec, CyclePlan, HParams, NoteReply
from tools.core.schema import DIMS
from tools.core.steering import OperatorNote

LEVER_NAMES = (
    "stack-cheap",
    "stack",
    "lm-only",
    "deeper",
    "more-epochs",
    "lr-half",
    "lr-double",
    "rank-up",
    "ordinal",
    "more-folds",
    "no-teacher",
    "more-data",
)
TOPICS: dict[str, tuple[str, ...]] = {
    r"learning[ -]rate|\blr\b": ("lr-half", "lr-double"),
    r"\brank\b": ("rank-up",),
    r"\bepochs?\b": ("more-epochs",),
    r"\blayers?\b|\bdepth\b": ("deeper",),
    r"\bfolds?\b": ("more-folds",),
    r"\bordinal\b|\bhead\b": ("ordinal",),
    r"\breplay\b|\baugmentation\b|\bmore data\b": ("more-data",),
    r"\bteacher\b": ("no-teacher",),
}
# What a lever moves in the hyperparameters (a note's "leave X alone" is checked on these for model plans).
LEVER_HPARAMS: dict[str, str] = {
    "lr-half": "learning_rate",
    "lr-double": "learning_rate",
    "rank-up": "lora_r",
    "more-epochs": "epochs",
}
_STOP = re.compile(r"^(please\s+)?(stop|halt)\b|\bstop (the )?(run|loop)\b|\bstop after\b")
_GATE = re.compile(
    r"\bgate\b|\bthreshold|\bmargin\b|\bconfidence\b|promote (it )?(anyway|regardless)|\bforce\b.*\bpromot"
    r"|skip (the )?(confirm|gate|bootstrap)|lower the bar"
)
_AVOID = re.compile(
    r"\bleave\b.*\balone\b|\bdon'?t\b|\bdo not\b|\bnever\b|\bavoid\b|\bno more\b|\bnot again\b"
    r"|\bkeep\b.*\b(fixed|as it is|unchanged)\b|\bstop (trying|touching|changing)\b"
)


class NoteAsks(BaseModel):
    """What the rule planner understood in one note."""

    note_id: int
    text: str
    focus: list[str] = []
    prefer: list[str] = []
    avoid: list[str] = []
    stop: bool = False
    relax_gate: bool = False

    @property
    def understood(self) -> bool:
        return bool(self.focus or self.prefer or self.avoid or self.stop or self.relax_gate)


def _levers_in(clause: str) -> list[str]:
    found: list[str] = []
    for lever in LEVER_NAMES:
        pattern = r"\b" + r"[ -]".join(map(re.escape, lever.split("-"))) + r"\b"
        if re.search(pattern, clause) and not (lever == "stack" and "stack-cheap" in found):
            found.append(lever)
    for topic, levers in TOPICS.items():
        if re.search(topic, clause):
            found.extend(lever for lever in levers if lever not in found)
    return found


def read_note(note: OperatorNote) -> NoteAsks:
    asks = NoteAsks(note_id=note.id, text=note.text)
    for clause in re.split(r"[;\n]|\.(?:\s|$)", note.text.lower()):
        clause = clause.strip()
        if not clause:
            continue
        if _STOP.search(clause) and not _AVOID.search(clause.replace("stop after", "")):
            asks.stop = True
            continue
        if _GATE.search(clause):
            asks.relax_gate = True
            continue
        levers = _levers_in(clause)
        if _AVOID.search(clause):
            asks.avoid += [lever for lever in levers if lever not in asks.avoid]
            continue
        asks.prefer += [lever for lever in levers if lever not in asks.prefer]
        asks.focus += [d for d in DIMS if re.search(rf"\b{d}\b", clause) and d not in asks.focus]
    asks.prefer = [lever for lever in asks.prefer if lever not in asks.avoid]
    return asks


def read_notes(notes: Sequence[OperatorNote]) -> list[NoteAsks]:
    return [read_note(note) for note in notes]


def asked_focus(asks: Sequence[NoteAsks]) -> list[str]:
    return list(dict.fromkeys(d for a in asks for d in a.focus))


def asked_levers(asks: Sequence[NoteAsks]) -> tuple[list[str], set[str]]:
    """(levers preferred, in the notes' order; levers to avoid)."""
    avoid = {lever for a in asks for lever in a.avoid}
    prefer = [lever for a in asks for lever in a.prefer if lever not in avoid]
    return list(dict.fromkeys(prefer)), avoid


GATE_REPLY = "a note cannot relax the gate: it is arithmetic, and no plan can change its settings"
STOP_REPLY = "this is the run's last cycle: the loop stops when it ends"


def offline_reply(asks: NoteAsks, plan: CyclePlan, untried_reasons: dict[str, str]) -> NoteReply:
    """The rule planner's reply: each ask it read, followed or not and why. `untried_reasons`: lever ->
    why the plan could not use it (already judged, no LM in the incumbent, ...)."""
    if not asks.understood:
        return NoteReply(
            note_id=asks.note_id,
            note=asks.text,
            followed=False,
            reason="the rule planner read no ask it knows here (dims by name, levers such as lr-half or "
            "more-data, 'leave X alone', 'stop'); a model planner reads free text",
        )
    parts: list[tuple[bool, str]] = []
    names = {spec.name for spec in plan.candidates}
    if asks.focus:
        missing = [d for d in asks.focus if d not in plan.focus_dims]
        parts.append(
            (
                not missing,
                f"focus {', '.join(asks.focus)}" + (f" (not: {', '.join(missing)})" if missing else ""),
            )
        )
    for lever in asks.prefer:
        if lever in names:
            parts.append((True, f"candidate {lever} proposed"))
        else:
            parts.append(
                (False, f"no {lever} candidate: {untried_reasons.get(lever, 'the K slots went first')}")
            )
    if asks.avoid:
        moved = sorted(set(asks.avoid) & names)
        parts.append(
            (
                not moved,
                f"no candidate uses {', '.join(asks.avoid)}" if not moved else f"{', '.join(moved)} proposed",
            )
        )
    if asks.stop:
        parts.append((True, STOP_REPLY))
    if asks.relax_gate:
        parts.append((False, GATE_REPLY))
    followed = all(ok for ok, _ in parts)
    return NoteReply(
        note_id=asks.note_id,
        note=asks.text,
        followed=followed,
        reason="; ".join(f"{'followed' if ok else 'not followed'}: {text}" for ok, text in parts),
    )


def moved_hparams(spec: CandidateSpec, reference: HParams) -> set[str]:
    before = reference.model_dump()
    return {name for name, value in spec.hparams.model_dump().items() if before[name] != value}


def complete_replies(plan: CyclePlan, asks: Sequence[NoteAsks]) -> list[NoteReply]:
    """A model plan's replies: one per open note (unknown ids dropped, a missing one says so); a note that
    asks to relax the gate is never 'followed', whatever the model wrote."""
    given = {reply.note_id: reply for reply in plan.note_replies}
    replies = []
    for ask in asks:
        reply = given.get(ask.note_id) or NoteReply(
            note_id=ask.note_id, followed=False, reason="the planner gave no reply to this note"
        )
        if ask.relax_gate and reply.followed:
            reply = NoteReply(note_id=ask.note_id, followed=False, reason=GATE_REPLY)
        replies.append(reply.model_copy(update={"note": ask.text}))
    return replies
