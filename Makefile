# fer-video: `make demo` analyses a sample clip, `make test` runs the test suite.
# Set-up is idempotent: it runs again only when pyproject.toml changes (stamp file).

VENV    ?= .venv
PYTHON  ?= python3
PY      := $(VENV)/bin/python
PIP     := $(PY) -m pip
STAMP   := $(VENV)/.fer-video-setup.stamp
RAY_STAMP := $(VENV)/.fer-video-ray.stamp
export FER_VIDEO_SHARED ?= $(abspath $(CURDIR)/../shared)

.PHONY: setup demo test chromium clean

setup: $(STAMP)

# torch/torchvision: these releases lie on this machine's disk (pip finds them there).
# facenet-pytorch 2.6.0 pins torch<2.3: install it without its pins (its real needs are in
# pyproject.toml).
# torch's CUDA build alone is about 5.6 GB in the venv: check the disk first, so that a full disk
# gives one clear line instead of pip's OSError halfway through.
NEED_MB := 8000

$(STAMP): pyproject.toml Makefile
	@$(PY) -c 'import torch' 2>/dev/null || { \
	  free_mb=$$(df -Pm . | awk 'NR==2 {print $$4}'); \
	  if [ "$$free_mb" -lt $(NEED_MB) ]; then \
	    echo "fer-video setup: needs about $(NEED_MB) MB of free disk for torch and the rest; $$free_mb MB free here" >&2; \
	    exit 1; fi; }
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PIP) install --quiet torch==2.14.1 torchvision==0.29.1
	$(PIP) install --quiet --no-deps facenet-pytorch==2.6.0
	$(PIP) install --quiet -e '.[dev]'
	@touch $@

# The optional Ray extra (analyze --executor ray): the tests need it, the demo does not.
$(RAY_STAMP): $(STAMP)
	$(PIP) install --quiet -e '.[dev,ray]'
	@touch $@

demo: setup
	$(VENV)/bin/fer-video analyze sample_videos/pyfeat_single_face.mp4

chromium:
	@test -x /usr/bin/chromium || { \
	  echo "installing Debian chromium (browser tests)"; \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null; }

test: setup $(RAY_STAMP) chromium
	$(PY) -m pytest

clean:
	rm -rf reports/*/ reports/summary.csv reports/index.html .pytest_cache
