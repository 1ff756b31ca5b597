# One-command setup and run on a fresh Debian machine (as root, or with
# sudo for the apt step).
VENV ?= .venv
PY := $(VENV)/bin/python
APT_PACKAGES := libvirt-dev pkg-config python3-venv openssl curl
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)

.PHONY: setup run test clean

# System packages (libvirt-python builds against libvirt-dev), the venv,
# and vmjobs installed in it with its test extras.
$(VENV)/.installed: setup.cfg pyproject.toml
	@if ! dpkg -s $(APT_PACKAGES) >/dev/null 2>&1; then \
		$(SUDO) apt-get update -qq && \
		DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y \
			--no-install-recommends $(APT_PACKAGES); \
	fi
	python3 -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[test]'
	touch $@

setup: $(VENV)/.installed

# The main job: 500 VMs on a private instance of libvirt's test driver.
run: setup
	$(VENV)/bin/vmjobs loadtest $(ARGS)

test: setup
	$(PY) -m pytest $(PYTEST_ARGS)

clean:
	rm -rf $(VENV) build *.egg-info
