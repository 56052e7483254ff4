# The two entry points of README.md. Both install what is missing first (scripts/install-deps).
.PHONY: demo test deps gpu-bundle

CARGO ?= cargo

deps:
	@scripts/install-deps

# Compile the example kernels for every target and print PTX statistics (ptxas reports registers).
demo: deps
	$(CARGO) build --release --bin tessel
	PTXAS="$$(scripts/ptxas-path)" ./target/release/tessel demo --out-dir target/demo

# Formatting, lints, then every test. GPU tests skip with a printed reason when no driver exists;
# with CI=true a missing ptxas fails the run.
test: deps
	$(CARGO) fmt --all -- --check
	$(CARGO) clippy --workspace --all-targets -- -D warnings
	PTXAS="$$(scripts/ptxas-path)" $(CARGO) test --workspace
	@echo "== GPU tests (these skip, saying why, where there is no CUDA driver)"
	@PTXAS="$$(scripts/ptxas-path)" $(CARGO) test --test 'gpu_*' -- --nocapture >target/gpu-tests.log 2>&1; \
	  status=$$?; grep -E "SKIP|^test result|^device|panicked" target/gpu-tests.log; exit $$status

# Build what the GPU machine runs (no LLVM inside) into .gpu/: see docs/gpu.md.
gpu-bundle: deps
	scripts/gpu-bundle
