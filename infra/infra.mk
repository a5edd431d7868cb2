# The AWS stack's targets, included by the top Makefile (`-include infra/infra.mk`).
#
#   make deploy  STACK=rsbatch REGION=eu-central-1 [PROFILE=…] [NOTIFY_EMAIL=…] [PARAMS="K=V …"]
#   make push-image                       (where a Docker engine exists)
#   make destroy STACK=rsbatch [EMPTY=1]  (EMPTY=1 also deletes every result and the bucket)
#
# ENDPOINT_URL points every command at an AWS-compatible endpoint (the tests use moto).

STACK         ?= rsbatch
REGION        ?=
PROFILE       ?=
ENDPOINT_URL  ?=
# the image tag both push-image pushes and deploy pins in the job definition
IMAGE_TAG     ?= $(shell git describe --always --dirty 2>/dev/null || echo latest)
NOTIFY_EMAIL  ?=
# any other template parameter, e.g. PARAMS="SpotMaxvCpus=512 OnDemandMaxvCpus=64"
PARAMS        ?=
EMPTY         ?= 0
CHECKOV_VERSION := 3.3.30
INFRA_TOOLS   := node_modules/.installed .checkov-venv/.installed-$(CHECKOV_VERSION)

STACK_ARGS = --stack $(STACK) $(if $(REGION),--region $(REGION)) \
             $(if $(PROFILE),--profile $(PROFILE)) $(if $(ENDPOINT_URL),--endpoint-url $(ENDPOINT_URL))

.PHONY: deploy
deploy: setup  ## create or update the AWS stack (STACK, REGION, PROFILE, IMAGE_TAG, NOTIFY_EMAIL, PARAMS)
	$(PY) -m infra.deploy deploy $(STACK_ARGS) --param ImageTag=$(IMAGE_TAG) \
	  $(if $(NOTIFY_EMAIL),--param NotificationEmail=$(NOTIFY_EMAIL)) $(foreach p,$(PARAMS),--param $(p))

.PHONY: outputs
outputs: setup  ## print the stack's outputs and write them where the plugin reads them
	$(PY) -m infra.deploy outputs $(STACK_ARGS)

.PHONY: destroy
destroy: setup  ## delete the AWS stack (EMPTY=1 also deletes every result and the results bucket)
	$(PY) -m infra.deploy destroy $(STACK_ARGS) $(if $(filter 1 yes true,$(EMPTY)),--empty-bucket)

.PHONY: push-image
push-image: setup  ## build worker/Dockerfile and push it to the stack's ECR repository as IMAGE_TAG
	@if ! command -v docker >/dev/null 2>&1 || ! docker info >/dev/null 2>&1; then \
	  echo "push-image: no Docker engine is available on this machine."; \
	  echo "  Where one is: make push-image STACK=$(STACK) (or docker build -f worker/Dockerfile ."; \
	  echo "  and push the image to the stack's RepositoryUri, tag $(IMAGE_TAG))."; \
	  exit 1; \
	fi
	@repo=$$($(PY) -m infra.deploy outputs $(STACK_ARGS) --key RepositoryUri) && \
	  $(PY) -m infra.deploy ecr-password $(STACK_ARGS) | \
	    docker login --username AWS --password-stdin "$${repo%%/*}" && \
	  docker build -f worker/Dockerfile -t "$$repo:$(IMAGE_TAG)" . && \
	  docker push "$$repo:$(IMAGE_TAG)" && \
	  echo "pushed $$repo:$(IMAGE_TAG); the stack runs ImageTag $$($(PY) -m infra.deploy outputs $(STACK_ARGS) --key ImageTag) (make deploy IMAGE_TAG=$(IMAGE_TAG) to switch)"

.PHONY: cost-table
cost-table: setup  ## rewrite infra/README.md's cost table from qgis_rsbatch/core/costs.py
	$(PY) -m infra.cost_table

.PHONY: infra-lint
infra-lint: setup $(INFRA_TOOLS)  ## check the stack: cfn-lint, asl-validator, checkov, IAM and schema tests
	$(PY) -m pytest -q tests/infra/test_template.py

# --- the stack's test tools (prerequisites of `make test`) -----------------------------------
# asl-validator (npm, pinned in package-lock.json) and checkov (its own virtualenv: it pins
# many packages of its own). Each is installed once and again only when its pin changes.
node_modules/.installed: package.json package-lock.json
	npm ci --no-audit --no-fund --loglevel=error
	@touch $@

.checkov-venv/.installed-$(CHECKOV_VERSION):
	@[ -x .checkov-venv/bin/python ] || /usr/bin/python3 -m venv .checkov-venv
	.checkov-venv/bin/pip install -q --disable-pip-version-check checkov==$(CHECKOV_VERSION)
	@touch $@

TEST_DEPS += $(INFRA_TOOLS)
