# One-command setup and run on a fresh Debian machine (as root, or with
# sudo for the system steps).
VENV ?= .venv
PY := $(VENV)/bin/python
# What `make run` needs, and no more: libvirt-python compiles against
# libvirt-dev (pkg-config finds it; gcc and the Python headers build it),
# and the venv holds vmjobs with its run dependencies.
RUN_PACKAGES := libvirt-dev pkg-config gcc libc6-dev python3-dev python3-venv
# What `make deb` needs: Debian's packaging tools (debian/control's
# Build-Depends, and build-essential, which dpkg-buildpackage checks for
# every build and dpkg-dev does not pull in).
DEB_PACKAGES := build-essential dpkg-dev debhelper dh-python pybuild-plugin-pyproject \
	python3-all python3-setuptools python3-wheel
# What `make test` adds: the real-daemon tests run a private libvirtd with
# QEMU (vmjobs sandbox); the TLS tests make their certificates with
# openssl; the API's curl examples use curl; the image tests make qcow2
# images with qemu-img (qemu-utils; vmjobs itself reads image headers
# without it); the package test builds the Debian package, checks it with
# lintian and systemd-analyze (beside the unit's /bin/kill, from procps),
# renders the man pages (groff) and runs the installed command on
# Debian's python3 with the packages it depends on;
# the shipped logrotate file is run by logrotate; the chaos run's
# partition (and its test) cuts the hosts' ports with nft (nftables); the
# bridge tests make a host bridge with ip (iproute2, which a minimal
# Debian lacks); a guest's emulated TPM is libvirt's swtpm, set up by
# swtpm_setup (swtpm-tools).
TEST_PACKAGES := openssl curl iproute2 procps libvirt-daemon libvirt-daemon-driver-qemu \
	qemu-system-x86 libvirt-clients util-linux qemu-utils $(DEB_PACKAGES) \
	lintian systemd groff-base logrotate nftables swtpm swtpm-tools \
	python3-libvirt python3-defusedxml \
	python3-prometheus-client python3-concurrent-log-handler \
	python3-portalocker
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)

.PHONY: setup system system-run run lint test clean deb

# apt-get install of the packages not yet installed, if any.
define apt_install
	@if ! dpkg -s $(1) >/dev/null 2>&1; then \
		$(SUDO) apt-get update -qq && \
		DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y \
			--no-install-recommends $(1); \
	fi
endef

system-run:
	$(call apt_install,$(RUN_PACKAGES))

# Everything the tests need; and the user libvirtd's QEMU driver looks up
# before it reads qemu.conf (Debian's libvirt-daemon-system would create
# it; the sandbox runs QEMU as root and needs nothing else of that package).
system: system-run
	$(call apt_install,$(TEST_PACKAGES))
	@getent passwd libvirt-qemu >/dev/null || $(SUDO) useradd --system \
		--no-create-home --shell /usr/sbin/nologin libvirt-qemu

# The venv, with vmjobs installed in it (editable) and its run
# dependencies; then, for the tests, its test extras.
$(VENV)/.run: setup.cfg pyproject.toml
	python3 -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e .
	touch $@

$(VENV)/.installed: $(VENV)/.run
	$(PY) -m pip install -q -e '.[test]'
	touch $@

# promtool, for the test that checks contrib/'s Prometheus alert rules:
# Debian ships it only in the `prometheus` package (19 MB), which would
# also install and start a Prometheus server; its promtool alone is
# extracted from the downloaded package into the venv instead.
$(VENV)/bin/promtool: | $(VENV)/.run
	rm -rf build/promtool && mkdir -p build/promtool
	cd build/promtool && (apt-get download prometheus 2>/dev/null || \
		($(SUDO) apt-get update -qq && apt-get download prometheus))
	dpkg-deb --fsys-tarfile build/promtool/prometheus_*.deb | \
		tar -x -C build/promtool ./usr/bin/promtool
	install -m 0755 build/promtool/usr/bin/promtool $@
	rm -rf build/promtool

setup: system $(VENV)/.installed $(VENV)/bin/promtool

# The main job: 500 VMs on a private instance of libvirt's test driver.
run: system-run $(VENV)/.run
	$(VENV)/bin/vmjobs loadtest $(ARGS)

# Zero findings, or the tests do not run (settings in pyproject.toml).
lint: setup
	$(VENV)/bin/ruff check .
	$(VENV)/bin/mypy workers vmjobs/flows/base.py

test: lint
	$(PY) -m pytest $(PYTEST_ARGS)

# The Debian package, built offline from Debian's own packages
# (DEB_PACKAGES), in build/deb/ (dpkg-buildpackage writes next to
# the tree it builds, so it builds a copy).
deb:
	$(call apt_install,$(DEB_PACKAGES))
	rm -rf build/deb && mkdir -p build/deb/vmjobs
	tar -c --exclude=./.venv --exclude=./build --exclude=./.git \
		--exclude='*.egg-info' --exclude=__pycache__ \
		--exclude=.pytest_cache --exclude=.mypy_cache \
		--exclude=.ruff_cache --exclude=.hypothesis . | tar -x -C build/deb/vmjobs
	# Debian's python3, not another one earlier on PATH (pyenv...).
	cd build/deb/vmjobs && env PATH=/usr/sbin:/usr/bin:/sbin:/bin \
		dpkg-buildpackage -us -uc -b
	@ls build/deb/vmjobs_*_all.deb

clean:
	rm -rf $(VENV) build *.egg-info
