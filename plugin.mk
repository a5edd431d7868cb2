# The QGIS plugin's targets; the top Makefile includes this file (`-include plugin.mk`).
# Alone: make -f Makefile -f plugin.mk package

PY            ?= .venv/bin/python
PLUGIN        := qgis_rsbatch
PLUGIN_VERSION := $(shell sed -n 's/^version=//p' metadata.txt)
PLUGIN_ZIP    := dist/$(PLUGIN)-$(PLUGIN_VERSION).zip
# The QGIS profile `install-plugin` links the plugin into (override on the command line).
QGIS_PROFILE  ?= $(HOME)/.local/share/QGIS/QGIS3/profiles/default
SHOTS_DIR     ?= docs

.PHONY: package
package:  ## build the installable plugin zip (dist/qgis_rsbatch-<version>.zip)
	@rm -rf build/plugin && mkdir -p build/plugin dist
	@# the whole package (core included), without caches or translation sources
	cp -R $(PLUGIN) build/plugin/$(PLUGIN)
	find build/plugin/$(PLUGIN) \( -name '__pycache__' -o -name '.pytest_cache' \) -prune \
	  -exec rm -rf {} + ; find build/plugin/$(PLUGIN) \( -name '*.py[co]' -o -name '*.ts' \) -delete
	@# the worker package, for the worker environment (core.workerenv): a plain folder, so
	@# QGIS never imports a top-level `worker`
	mkdir -p build/plugin/$(PLUGIN)/bundled && cp -R worker build/plugin/$(PLUGIN)/bundled/worker
	find build/plugin/$(PLUGIN)/bundled \( -name '__pycache__' -o -name 'Dockerfile' \) -prune \
	  -exec rm -rf {} + ; find build/plugin/$(PLUGIN)/bundled -name '*.py[co]' -delete
	cp metadata.txt build/plugin/$(PLUGIN)/metadata.txt
	@[ ! -f LICENSE ] || cp LICENSE build/plugin/$(PLUGIN)/LICENSE
	@rm -f $(PLUGIN_ZIP)
	@# Python's own zip tool: no zip/unzip package needed
	cd build/plugin && python3 -m zipfile -c ../../$(PLUGIN_ZIP) $(PLUGIN)
	@# what QGIS's installer needs, and nothing that may collide with QGIS's own packages
	@python3 -m zipfile -l $(PLUGIN_ZIP) > build/plugin/contents.txt
	@grep -q '^$(PLUGIN)/metadata.txt ' build/plugin/contents.txt
	@grep -q '^$(PLUGIN)/icons/rsbatch.svg ' build/plugin/contents.txt
	@grep -q '^$(PLUGIN)/worker_requirements.txt ' build/plugin/contents.txt
	@grep -q '^$(PLUGIN)/bundled/worker/cli.py ' build/plugin/contents.txt
	@! grep -E '^$(PLUGIN)/(worker|tests|infra|bench)/|^$(PLUGIN)/bundled/__init__|site-packages|__pycache__' \
	  build/plugin/contents.txt
	@echo "plugin: $(PLUGIN_ZIP) ($$(tail -n +2 build/plugin/contents.txt | grep -vc '/ ') files)"

.PHONY: install-plugin
install-plugin:  ## link the plugin into a QGIS profile for development (QGIS_PROFILE=…)
	@# a real folder of links: the package's entries and metadata.txt, none inside the repo
	@target="$(QGIS_PROFILE)/python/plugins/$(PLUGIN)"; \
	if [ -L "$$target" ]; then rm "$$target"; fi; \
	mkdir -p "$$target"; \
	find "$$target" -maxdepth 1 -type l -delete; \
	for entry in $(CURDIR)/$(PLUGIN)/*; do \
	  case "$$(basename "$$entry")" in __pycache__) continue;; esac; \
	  ln -sfn "$$entry" "$$target/$$(basename "$$entry")"; \
	done; \
	ln -sfn "$(CURDIR)/metadata.txt" "$$target/metadata.txt"; \
	echo "linked $(PLUGIN) into $$target; enable it in Plugins ▸ Manage and Install Plugins"

.PHONY: uninstall-plugin
uninstall-plugin:  ## remove the development links from the QGIS profile
	rm -rf "$(QGIS_PROFILE)/python/plugins/$(PLUGIN)"

.PHONY: screenshots
screenshots: setup  ## real QGIS under xvfb runs the demo flow through the dock; PNGs to docs/
	$(PY) tools/screenshots.py --out $(SHOTS_DIR)

.PHONY: screenshots-zip
screenshots-zip: package wheelhouse  ## real QGIS under xvfb, plugin from the ZIP: set-up, sample data, a job; PNGs to docs/
	$(PY) tools/screenshots_zip.py --zip $(PLUGIN_ZIP) --wheelhouse $(WHEELHOUSE) --out $(SHOTS_DIR)
