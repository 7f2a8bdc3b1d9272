"""The student: a base model, optionally with a LoRA adapter merged in, plus its tokenizer."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from tools.core.schema import Prediction
from tools.student.base_model import BUNDLED, BUNDLED_NAME, load_base
from tools.student.decoding import GenerativeDecoder, SkeletonMemo, predict_batch, predict_one

if TYPE_CHECKING:
    from transformers import PreTrainedModel, PreTrainedTokenizerBase


@dataclass
class GenerativeStudent:
    model: PreTrainedModel
    tokenizer: PreTrainedTokenizerBase
    base_spec: str
    adapter_dir: Path | None = None
    # skeleton and skeleton_ev of the same batch share one forward pass (the weights never change)
    skeleton_memo: SkeletonMemo = field(default_factory=SkeletonMemo, repr=False)

    @classmethod
    def load(
        cls, base_spec: str | Path = BUNDLED, adapter_dir: str | Path | None = None
    ) -> GenerativeStudent:
        """Load the base model; with `adapter_dir`, load that peft adapter and merge it (faster inference)."""
        model, tokenizer = load_base(base_spec)
        adapter = Path(adapter_dir) if adapter_dir is not None else None
        if adapter is not None:
            from peft import PeftModel

            if not (adapter / "adapter_config.json").is_file():
                raise FileNotFoundError(f"{adapter} has no adapter_config.json: not a peft adapter folder")
            model = PeftModel.from_pretrained(model, adapter).merge_and_unload()
            model.eval()
        return cls(model=model, tokenizer=tokenizer, base_spec=str(base_spec), adapter_dir=adapter)

    @property
    def name(self) -> str:
        base = BUNDLED_NAME if self.base_spec == BUNDLED else Path(self.base_spec).name or self.base_spec
        return f"{base}+{self.adapter_dir.name}" if self.adapter_dir is not None else base

    def predict_batch(
        self, texts: Sequence[str], decoder: GenerativeDecoder = "skeleton", batch_size: int = 8
    ) -> list[Prediction]:
        """Every prediction is served by this model (`served_by="model"`); latency is per-row batch share."""
        return predict_batch(
            self.model, self.tokenizer, texts, decoder, batch_size, skeleton_memo=self.skeleton_memo
        )

    def predict_one(self, text: str, decoder: GenerativeDecoder = "skeleton") -> Prediction:
        return predict_one(self.model, self.tokenizer, text, decoder)
