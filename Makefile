# qcat: two set-up commands, `make demo` and `make test`, on a fresh Debian machine with only
# Python and make. Both create .venv when needed and install what they need; as root they also
# install the Debian packages below (otherwise they say what to install and carry on).

PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
# Debian packages: flite speaks the verdicts (its voice rms is the one an offline recogniser
# understands best of those Debian ships: docs/voices.md), espeak-ng is the fallback voice when
# flite is missing, libportaudio2 lets sounddevice play them,
# the RISC-V cross compiler and picolibc build the cat unit's firmware for the real MCU, tmux
# drives the dashboard in the tests as a person would (and keeps it running over ssh), dosfstools
# and mtools make and check the units' FAT32 SD-card images (`qcat sd build --out FILE.img`).
DEB_PACKAGES := flite espeak-ng libportaudio2 \
                gcc-riscv64-unknown-elf picolibc-riscv64-unknown-elf tmux dosfstools mtools
# For `make test` only: festival and its HTS voice (their adapter is checked beside the
# default's in tests/test_phrases_voices.py), headless Chromium screenshots `qcat tui --web` (about 110 MB to
# fetch, 4 s to unpack on the CI machine; the test skips, saying why, where it is absent);
# QEMU's RISC-V system emulator runs the die unit's rv32ec build (its bytes against the host's,
# its instructions per roll).
TEST_DEB_PACKAGES := festival festvox-us-slt-hts chromium qemu-system-misc
STAMP  := $(VENV)/.qcat-installed

.PHONY: demo test lint bench system-deps test-deps deb-install venv clean help firmware-sizes

help:
	@echo "make demo    build what the demo needs and generate a few exhibits"
	@echo "make test    run the whole test suite (what CI runs)"
	@echo "make lint    ruff + mypy + import-linter (the layer contracts in pyproject.toml)"
	@echo "make bench   speed and size benchmarks (qcat bench)"

demo: system-deps venv
	$(BIN)/qcat demo

test: test-deps venv firmware-sizes
	$(BIN)/lint-imports --no-cache
	$(BIN)/python -m pytest -q

# The cat unit's RISC-V build, with its text/data/bss and worst stack depth in the log (the
# tests build it too and fail in CI without the cross compiler; here it only reports).
firmware-sizes:
	@if command -v riscv64-unknown-elf-gcc >/dev/null; then \
	  $(MAKE) --no-print-directory -s -C firmware rv32 2>&1 | grep -A6 '^rv32 sizes'; \
	else echo "note: riscv64-unknown-elf-gcc missing: the rv32 build is skipped here"; fi

lint: venv
	$(BIN)/ruff check installation quantum phrases firmware models tui tests
	$(BIN)/mypy
	$(BIN)/lint-imports --no-cache

bench: system-deps venv
	$(BIN)/qcat bench

# Installs the Debian packages when running as root and any is missing; never fails the build
# for a non-root user, but names the exact command to run.
system-deps:
	@$(MAKE) --no-print-directory deb-install PACKAGES="$(DEB_PACKAGES)"

test-deps:
	@$(MAKE) --no-print-directory deb-install PACKAGES="$(DEB_PACKAGES) $(TEST_DEB_PACKAGES)"

deb-install:
	@missing=""; for p in $(PACKAGES); do \
	  dpkg -s $$p >/dev/null 2>&1 || missing="$$missing $$p"; done; \
	if [ -z "$$missing" ]; then exit 0; fi; \
	if [ "$$(id -u)" = "0" ] && command -v apt-get >/dev/null; then \
	  echo "installing Debian packages:$$missing"; \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing >/dev/null; \
	else \
	  echo "note: missing Debian packages:$$missing"; \
	  echo "      install them with: sudo apt-get install$$missing"; \
	  echo "      (speech, audio playback, the RISC-V build or the tmux and Chromium tests are unavailable until then)"; \
	fi

venv: $(STAMP)

$(STAMP): pyproject.toml
	@if [ ! -x $(BIN)/python ]; then \
	  $(PYTHON) -m venv $(VENV) 2>/dev/null || { \
	    if [ "$$(id -u)" = "0" ] && command -v apt-get >/dev/null; then \
	      apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq python3-venv >/dev/null && \
	      rm -rf $(VENV) && $(PYTHON) -m venv $(VENV); \
	    else echo "error: $(PYTHON) -m venv failed; install python3-venv"; exit 2; fi; }; \
	fi
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -e '.[dev,train]'
	@touch $(STAMP)

clean:
	rm -rf $(VENV) firmware/build .pytest_cache .mypy_cache .ruff_cache
