"""The Kotone data generator: the shipped dataset and the offline teacher both come from here.

Two row types, both learnable by construction:
- `rule_prompt`: one part per slot (style, instrument, mood, gimmick) from data/catalogue.json, rendered
  in a fixed template; target = clip(base + sum of the four parts' integer effects).
- `request_text`: a scene plus 3-5 other lexicon phrases (time of day, weather, tempo, instrumentation,
  mood, era) from data/lexicon.json in varied sentence frames; target = clip(round(base + sum of the
  phrases' effects + noise)), where noise moves one random dim by +/-1 with probability 0.2 (see the
  lexicon's `noise`), so free text is learnable but not exactly.

`python -m tools.generator --out data/kotone` regenerates the shipped splits deterministically from a seed.
"""

from __future__ import annotations

import argparse
import json
import random
import re
from collections import Counter
from collections.abc import Mapping, Sequence
from functools import lru_cache
from pathlib import Path

import numpy as np
from pydantic import BaseModel, ConfigDict

from tools.core.schema import DIMS, SCALE_MAX, SCALE_MIN, ParamVector, SourceType, TrainingRow, rounded_scores
from tools.data.dataset import PROJECT_ROOT, check_no_leak, data_hash, normalise_text, write_jsonl

GENERATOR_VERSION = "1"
DEFAULT_SEED = 20261127
DEFAULT_SIZES: dict[str, int] = {"train": 600, "valid": 120, "test": 120}
RULE_SHARE = 0.5
CATALOGUE_PATH = PROJECT_ROOT / "data" / "catalogue.json"
LEXICON_PATH = PROJECT_ROOT / "data" / "lexicon.json"
SLOTS: tuple[str, ...] = ("style", "instrument", "mood", "gimmick")
SCENE = "scene"


class Part(BaseModel):
    """One Kotone part: an id, a display name and its additive effect on the hidden parameters."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    id: str
    name: str
    effects: dict[str, int]


class Catalogue(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    version: int
    description: str
    base: dict[str, int]
    rule_template: str
    rule_slot_line: str
    rule_paraphrase_frames: list[str]
    slots: dict[str, list[Part]]

    def part(self, part_id: str) -> Part:
        for parts in self.slots.values():
            for part in parts:
                if part.id == part_id:
                    return part
        raise KeyError(part_id)


class Phrase(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    id: str
    text: str
    effects: dict[str, int]


class Category(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    required: bool = False
    joins_scene: bool = False
    forms: list[str]
    phrases: list[Phrase]


class NoiseSpec(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    probability: float
    magnitude: int
    about: str


class Lexicon(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    version: int
    description: str
    base: dict[str, int]
    noise: NoiseSpec
    optional_categories_per_row: tuple[int, int]
    categories: dict[str, Category]
    frames: list[str]
    closers: list[str]
    synonyms: dict[str, list[str]]
    reframes: list[str]

    @property
    def optional_categories(self) -> list[str]:
        return [name for name, cat in self.categories.items() if not cat.required]


@lru_cache(maxsize=4)
def load_catalogue(path: Path = CATALOGUE_PATH) -> Catalogue:
    catalogue = Catalogue.model_validate_json(Path(path).read_text(encoding="utf-8"))
    _check_effects(path, [p for parts in catalogue.slots.values() for p in parts])
    if tuple(catalogue.slots) != SLOTS:
        raise ValueError(f"{path}: slots must be {SLOTS}, got {tuple(catalogue.slots)}")
    return catalogue


@lru_cache(maxsize=4)
def load_lexicon(path: Path = LEXICON_PATH) -> Lexicon:
    lexicon = Lexicon.model_validate_json(Path(path).read_text(encoding="utf-8"))
    _check_effects(path, [p for cat in lexicon.categories.values() for p in cat.phrases])
    if SCENE not in lexicon.categories:
        raise ValueError(f"{path}: the lexicon needs a {SCENE!r} category")
    return lexicon


def _check_effects(path: Path, items: Sequence[Part | Phrase]) -> None:
    for item in items:
        unknown = set(item.effects) - set(DIMS)
        if unknown:
            raise ValueError(f"{path}: {item.id} has effects on unknown dims {sorted(unknown)}")
        if any(re.search(r"\d", t) for t in (getattr(item, "name", ""), getattr(item, "text", ""))):
            raise ValueError(f"{path}: {item.id} has a digit in its text (numeric leak)")


def combine(
    base: Mapping[str, int], effects: Sequence[Mapping[str, int]], noise: tuple[str, int] | None = None
):
    """Unclipped sum of the base and the effects (plus an optional (dim, delta) noise), in DIMS order."""
    total = {d: float(base[d]) for d in DIMS}
    for effect in effects:
        for dim, delta in effect.items():
            total[dim] += delta
    if noise is not None:
        total[noise[0]] += noise[1]
    return [total[d] for d in DIMS]


def to_target(values: Sequence[float]) -> ParamVector:
    return ParamVector.from_list([int(min(SCALE_MAX, max(SCALE_MIN, round(v)))) for v in values])


# --- rule_prompt rows -------------------------------------------------------------------------------


def render_rule_prompt(
    parts: Sequence[Part], *, frame: str | None = None, slot_order: Sequence[int] = (0, 1, 2, 3)
):
    """The fixed rule template (or, for replay paraphrases, another frame and slot order)."""
    catalogue = load_catalogue()
    lines = [
        catalogue.rule_slot_line.format(slot=SLOTS[i], name=parts[i].name, id=parts[i].id) for i in slot_order
    ]
    return (frame or catalogue.rule_template).format(slot_lines="\n".join(lines))


def rule_target(parts: Sequence[Part]) -> ParamVector:
    return to_target(combine(load_catalogue().base, [p.effects for p in parts]))


def sample_rule_parts(rng: random.Random) -> tuple[Part, ...]:
    catalogue = load_catalogue()
    return tuple(rng.choice(catalogue.slots[slot]) for slot in SLOTS)


def parse_rule_parts(text: str) -> tuple[Part, ...] | None:
    """The four parts named by id in a rule prompt of ours, or None when the text is not one."""
    catalogue = load_catalogue()
    found: dict[str, Part] = {}
    for slot in SLOTS:
        for part in catalogue.slots[slot]:
            if re.search(rf"\[{re.escape(part.id)}\]", text):
                found[slot] = part
    return tuple(found[s] for s in SLOTS) if len(found) == len(SLOTS) else None


# --- request_text rows ------------------------------------------------------------------------------

Choice = dict[str, Phrase]  # category -> phrase


def choice_key(choice: Choice) -> frozenset[str]:
    return frozenset(p.id for p in choice.values())


def sample_request_choice(rng: random.Random) -> Choice:
    """A scene plus 3-5 phrases from distinct optional categories."""
    lexicon = load_lexicon()
    low, high = lexicon.optional_categories_per_row
    categories = rng.sample(lexicon.optional_categories, rng.randint(low, high))
    choice = {SCENE: rng.choice(lexicon.categories[SCENE].phrases)}
    for name in categories:
        choice[name] = rng.choice(lexicon.categories[name].phrases)
    return choice


def request_values(choice: Choice, noise: tuple[str, int] | None = None) -> list[float]:
    return combine(load_lexicon().base, [p.effects for p in choice.values()], noise)


def sample_noise(rng: random.Random) -> tuple[str, int] | None:
    spec = load_lexicon().noise
    if rng.random() >= spec.probability:
        return None
    return rng.choice(DIMS), rng.choice((-spec.magnitude, spec.magnitude))


def render_request(choice: Choice, rng: random.Random) -> str:
    """One natural sentence (or two) from a random frame; the phrases appear verbatim."""
    lexicon = load_lexicon()
    scene = choice[SCENE].text
    details: list[str] = []
    for name, phrase in choice.items():
        if name == SCENE:
            continue
        category = lexicon.categories[name]
        if category.joins_scene:
            scene = f"{scene} {phrase.text}"
        else:
            details.append(rng.choice(category.forms).format(p=phrase.text))
    rng.shuffle(details)
    joined = details[0] if len(details) == 1 else ", ".join(details[:-1]) + " and " + details[-1]
    frame = rng.choice(lexicon.frames)
    text = frame.format(scene=scene, details=joined, Details=joined[:1].upper() + joined[1:])
    return text + rng.choice(lexicon.closers)


@lru_cache(maxsize=1)
def _phrase_patterns() -> list[tuple[str, Phrase, re.Pattern[str]]]:
    lexicon = load_lexicon()
    found = [(name, p) for name, cat in lexicon.categories.items() for p in cat.phrases]
    found.sort(key=lambda item: -len(item[1].text))
    return [(name, p, re.compile(rf"\b{re.escape(p.text.lower())}\b")) for name, p in found]


def parse_request_choice(text: str) -> Choice | None:
    """The lexicon phrases in a request of ours (longest match first), or None without a scene."""
    lowered = text.lower()
    choice: Choice = {}
    for name, phrase, pattern in _phrase_patterns():
        if name not in choice and pattern.search(lowered):
            choice[name] = phrase
    if SCENE not in choice or len(choice) < 2:
        return None
    return {SCENE: choice.pop(SCENE), **choice}


def content_key(text: str) -> tuple[str, frozenset[str]] | None:
    """What a text of ours says, whatever the wording: its part set or phrase set (None for other text)."""
    parts = parse_rule_parts(text)
    if parts is not None:
        return "rule", frozenset(p.id for p in parts)
    choice = parse_request_choice(text)
    return ("request", choice_key(choice)) if choice is not None else None


# --- the shipped dataset -----------------------------------------------------------------------------


def generate_rows(n: int, source_type: SourceType, rng: random.Random, seen: set) -> list[TrainingRow]:
    """n rows of one source type with combinations and normalised texts not in `seen` (updated)."""
    rows: list[TrainingRow] = []
    while len(rows) < n:
        if source_type is SourceType.rule_prompt:
            parts = sample_rule_parts(rng)
            key: object = tuple(p.id for p in parts)
            text, target = render_rule_prompt(parts), rule_target(parts)
        else:
            choice = sample_request_choice(rng)
            key = choice_key(choice)
            text = render_request(choice, rng)
            target = to_target(request_values(choice, sample_noise(rng)))
        norm = normalise_text(text)
        if key in seen or norm in seen:
            continue
        seen.update((key, norm))
        rows.append(
            TrainingRow(request_text=text, source_type=source_type, target=target, origin="generator")
        )
    return rows


def generate_splits(
    seed: int = DEFAULT_SEED, sizes: Mapping[str, int] = DEFAULT_SIZES, rule_share: float = RULE_SHARE
) -> dict[str, list[TrainingRow]]:
    """Fixed splits; no combination (part set / phrase set) and no normalised text appears twice anywhere."""
    rng = random.Random(seed)
    seen: set = set()
    splits: dict[str, list[TrainingRow]] = {}
    for split, size in sizes.items():
        n_rule = round(size * rule_share)
        rows = generate_rows(n_rule, SourceType.rule_prompt, rng, seen)
        rows += generate_rows(size - n_rule, SourceType.request_text, rng, seen)
        rng.shuffle(rows)
        splits[split] = rows
    check_no_leak(splits)
    return splits


def target_stats(rows: Sequence[TrainingRow]) -> dict[str, dict[str, float | list[int]]]:
    targets = np.array([r.target.as_list() for r in rows])
    return {
        d: {
            "min": int(targets[:, i].min()),
            "max": int(targets[:, i].max()),
            "mean": round(float(targets[:, i].mean()), 3),
            "std": round(float(targets[:, i].std()), 3),
            "histogram_0_to_10": np.bincount(targets[:, i], minlength=SCALE_MAX + 1).tolist(),
        }
        for i, d in enumerate(DIMS)
    }


def learnability(rows: Sequence[TrainingRow], folds: int = 5, seed: int = 0) -> dict[str, dict]:
    """K-fold CV MAE of TF-IDF (1-2 grams, sublinear) + ridge (alpha 1) vs the fold median, per source type.

    Both are fitted on all source types together (as the student is) and scored per source type.
    """
    from sklearn.feature_extraction.text import TfidfVectorizer
    from sklearn.linear_model import Ridge
    from sklearn.model_selection import KFold

    texts = [r.request_text for r in rows]
    targets = np.array([r.target.as_list() for r in rows], dtype=float)
    ridge_err, ridge_round_err, median_err = (np.zeros_like(targets) for _ in range(3))
    for train_idx, test_idx in KFold(folds, shuffle=True, random_state=seed).split(texts):
        vectorizer = TfidfVectorizer(ngram_range=(1, 2), sublinear_tf=True)
        features = vectorizer.fit_transform([texts[i] for i in train_idx])
        model = Ridge(alpha=1.0).fit(features, targets[train_idx])
        pred = model.predict(vectorizer.transform([texts[i] for i in test_idx]))
        ridge_err[test_idx] = np.abs(pred - targets[test_idx])
        ridge_round_err[test_idx] = np.abs(rounded_scores(pred) - targets[test_idx])
        median_err[test_idx] = np.abs(np.median(targets[train_idx], axis=0) - targets[test_idx])
    report: dict[str, dict] = {}
    for source_type in sorted({r.source_type.value for r in rows}):
        mask = np.array([r.source_type.value == source_type for r in rows])
        report[source_type] = {
            "n_rows": int(mask.sum()),
            "median_mae": round(float(median_err[mask].mean()), 3),
            "ridge_mae": round(float(ridge_err[mask].mean()), 3),
            "ridge_mae_rounded": round(float(ridge_round_err[mask].mean()), 3),
            "per_dim_median_mae": {
                d: round(float(median_err[mask, i].mean()), 3) for i, d in enumerate(DIMS)
            },
            "per_dim_ridge_mae": {d: round(float(ridge_err[mask, i].mean()), 3) for i, d in enumerate(DIMS)},
        }
    return report


def build_manifest(
    splits: Mapping[str, Sequence[TrainingRow]], seed: int, with_learnability: bool = True
) -> dict:
    all_rows = [row for rows in splits.values() for row in rows]
    manifest = {
        "name": "kotone-shipped",
        "generator": {"module": "tools.generator", "version": GENERATOR_VERSION, "seed": seed},
        "catalogue_version": load_catalogue().version,
        "lexicon_version": load_lexicon().version,
        "request_text_noise": load_lexicon().noise.model_dump(),
        "data_hash": data_hash(all_rows),
        "splits": {
            name: {
                "rows": len(rows),
                "by_source_type": dict(sorted(Counter(r.source_type.value for r in rows).items())),
                "data_hash": data_hash(rows),
                "target_stats": target_stats(rows),
            }
            for name, rows in splits.items()
        },
    }
    if with_learnability:
        manifest["learnability_train_cv"] = learnability(splits["train"])
    return manifest


def write_dataset(out_dir: Path, seed: int = DEFAULT_SEED, with_learnability: bool = True) -> dict:
    """Generate and write {train,valid,test}.jsonl + manifest.json under out_dir (atomically)."""
    from tools.core.atomic import atomic_write_json

    splits = generate_splits(seed)
    for name, rows in splits.items():
        write_jsonl(out_dir / f"{name}.jsonl", rows)
    manifest = build_manifest(splits, seed, with_learnability)
    atomic_write_json(out_dir / "manifest.json", manifest)
    return manifest


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--out", type=Path, default=PROJECT_ROOT / "data" / "kotone", help="output folder")
    parser.add_argument("--seed", type=int, default=DEFAULT_SEED)
    parser.add_argument(
        "--skip-learnability", action="store_true", help="do not run the TF-IDF+ridge CV check"
    )
    args = parser.parse_args(argv)
    manifest = write_dataset(args.out, args.seed, not args.skip_learnability)
    summary = {name: split["by_source_type"] for name, split in manifest["splits"].items()}
    print(json.dumps({"out": str(args.out), "data_hash": manifest["data_hash"], "splits": summary}, indent=2))
    for source_type, figures in manifest.get("learnability_train_cv", {}).items():
        print(
            f"{source_type:<13} n={figures['n_rows']:<4} median MAE {figures['median_mae']:.3f}  "
            f"ridge CV MAE {figures['ridge_mae']:.3f} (rounded {figures['ridge_mae_rounded']:.3f})"
        )


if __name__ == "__main__":
    main()
