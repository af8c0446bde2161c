# The two commands of the quick start: `make demo` and `make test`.
# Both build and use their own virtual environment in .venv.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: demo test test-pure test-linux test-openamp firmware test-firmware lint bench clean

# The compiled virtqueue, GLINK FIFO ends, MU accessors and section entry/exit are built
# by the install (the old ones removed first: never a stale one), which goes on without
# them if they cannot be built; the last lines say which.
$(STAMP): pyproject.toml setup.py src/amplink/virtio/_vring.c src/amplink/rpmsg/_glink.c src/amplink/hw/_mu.c src/amplink/irq/_held.c
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	rm -f src/amplink/virtio/_vring.*.so src/amplink/rpmsg/_glink.*.so src/amplink/hw/_mu.*.so src/amplink/irq/_held.*.so
	$(BIN)/pip install --quiet -e '.[dev]'
	@$(BIN)/python -c 'import importlib.util as u; [print(f"amplink: the compiled {w} {v} built" if u.find_spec(m) else f"amplink: WARNING: the compiled {w} could not be built (no C compiler or Python headers?): the pure-Python {w} {r}") for m, w, v, r in (("amplink.virtio._vring", "virtqueue", "is", "runs"), ("amplink.rpmsg._glink", "GLINK FIFO ends", "are", "run"), ("amplink.hw._mu", "MU register accessors", "are", "run"), ("amplink.irq._held", "section entry and exit", "are", "run"))]'
	touch $(STAMP)

demo: $(STAMP)
	$(BIN)/amplink demo

test: $(STAMP)
	$(BIN)/pytest

# The same suite on the pure-Python virtqueue, GLINK FIFO ends, MU accessors and sections
# (what runs where the compiled ones could not be built): CI runs both.
test-pure: $(STAMP)
	AMPLINK_PURE_PYTHON=1 $(BIN)/pytest

lint: $(STAMP)
	$(BIN)/ruff check src tests examples
	$(BIN)/ruff format --check src tests examples
	$(BIN)/mypy

bench: $(STAMP)
	$(BIN)/amplink bench

clean:
	rm -rf $(VENV) build src/*.egg-info .pytest_cache .mypy_cache .ruff_cache
	rm -f src/amplink/virtio/_vring.*.so src/amplink/rpmsg/_glink.*.so src/amplink/hw/_mu.*.so src/amplink/irq/_held.*.so

# The conformance tests against a real Linux kernel (User-Mode Linux); builds the
# kernel into ~/.cache/amplink-uml first when it is not there (several minutes).
test-linux: $(STAMP)
	bash tools/uml/build-kernel.sh >/dev/null
	$(BIN)/pytest --linux

# The tests against OpenAMP's own demo applications (rpmsg-echo, rpmsg-*-ping,
# matrix_multiplyd), built from the pinned sources into ~/.cache/amplink-openamp first
# when they are not there (about a minute).
test-openamp: $(STAMP)
	bash tools/openamp/build-demos.sh >/dev/null
	$(BIN)/pytest --openamp

# The Cortex-M images the emulated cores run (rpmsg-lite and OpenAMP, built from the
# pinned upstream sources with amplink's porting layers), cached in
# ~/.cache/amplink-firmware; then the tests that run them.
firmware:
	bash tools/firmware/build.sh >/dev/null

test-firmware: firmware $(STAMP)
	$(BIN)/pytest -m firmware
