# One-command setup and run on a fresh Debian machine (as root, or with
# sudo for the system steps).
VENV ?= .venv
PY := $(VENV)/bin/python
# libvirt-python builds against libvirt-dev; the real-daemon tests run a
# private libvirtd with QEMU (vmjobs sandbox); the TLS tests make their
# certificates with openssl; the README's examples use curl; the image
# tests make qcow2 images with qemu-img (qemu-utils; vmjobs itself reads
# image headers without it).
APT_PACKAGES := libvirt-dev pkg-config python3-venv openssl curl \
	libvirt-daemon libvirt-daemon-driver-qemu qemu-system-x86 \
	libvirt-clients util-linux qemu-utils
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)

.PHONY: setup system run lint test clean

# System packages, and the user libvirtd's QEMU driver looks up before it
# reads qemu.conf (Debian's libvirt-daemon-system would create it; the
# sandbox runs QEMU as root and needs nothing else of that package).
system:
	@if ! dpkg -s $(APT_PACKAGES) >/dev/null 2>&1; then \
		$(SUDO) apt-get update -qq && \
		DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y \
			--no-install-recommends $(APT_PACKAGES); \
	fi
	@getent passwd libvirt-qemu >/dev/null || $(SUDO) useradd --system \
		--no-create-home --shell /usr/sbin/nologin libvirt-qemu

# The venv, with vmjobs installed in it (editable) with its test extras.
$(VENV)/.installed: setup.cfg pyproject.toml
	python3 -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[test]'
	touch $@

setup: system $(VENV)/.installed

# The main job: 500 VMs on a private instance of libvirt's test driver.
run: setup
	$(VENV)/bin/vmjobs loadtest $(ARGS)

# Zero findings, or the tests do not run (settings in pyproject.toml).
lint: setup
	$(VENV)/bin/ruff check .
	$(VENV)/bin/mypy workers vmjobs/flows/base.py

test: lint
	$(PY) -m pytest $(PYTEST_ARGS)

clean:
	rm -rf $(VENV) build *.egg-info
