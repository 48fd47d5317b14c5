# make demo  - create .venv, install requirements, run the CPU demo below (8 min 6 s in a fresh clone on 2 AMD EPYC cores, Jittor compiling everything first)
# make test  - create .venv if needed, run the test suite; on a CPU with AVX-512, run the modules whose numbers
#              depend on the instruction set once more computing as an AVX2-only CPU (python -m util.cpu_isa)
# make test-isa ISA=avx2 [TESTS="tests/test_x.py ..."] - the suite (or TESTS) computing as an ISA-only CPU
# make bench - training benchmark (python -m util.bench: the real settings on a GPU, a small preset on a CPU)
# make clean - remove demo results (keeps .venv and checkpoints)

PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
export PYTHONUNBUFFERED := 1

DEMO_DIR   := results/demo
DEMO_DATA  := $(DEMO_DIR)/data
DEMO_NAME  := demo
DEMO_CKPT  := $(DEMO_DIR)/checkpoints
# pytorch-fid's FID Inception weights: with them the demo ranks its fine-tuning checkpoints by FID,
# averages the best two and keeps the best of 3 generation seeds
INCEPTION_WEIGHTS ?= pretrained/pt_inception-2015-12-05-6726825d.pth
WEIGHTS_FLAG := $(if $(wildcard $(INCEPTION_WEIGHTS)),--inception_weights $(INCEPTION_WEIGHTS),)
# without them test.py makes one run and does not download them (the demo stays within its time on the CPU)
TEST_FID_FLAG := $(if $(WEIGHTS_FLAG),$(WEIGHTS_FLAG),--no_download)

.PHONY: venv test test-isa demo bench clean

# The modules whose results depend on the CPU's instruction set (oneDNN's kernels, Jittor's -march=native kernels)
ISA_TESTS := tests/test_cpu_isa.py tests/test_reference_parity.py tests/test_coesak_parity.py tests/test_spade_parity.py \
             tests/test_convolution.py tests/test_diff_augment.py tests/test_distributed.py
ISA   ?= avx2
TESTS ?= tests

$(STAMP): requirements.txt requirements-test.txt
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -r requirements-test.txt
	touch $(STAMP)

venv: $(STAMP)

test: $(STAMP)
	$(BIN)/python -m pytest -q -rs tests
	$(BIN)/python -m util.cpu_isa --as avx2 --or_skip -- $(BIN)/python -m pytest -q -rs $(ISA_TESTS)

test-isa: $(STAMP)
	$(BIN)/python -m util.cpu_isa --as $(ISA) -- $(BIN)/python -m pytest -q -rs $(TESTS)

demo: $(STAMP)
	$(BIN)/python -m util.demo_data --out $(DEMO_DATA) --num 240 --num_test 12 --width 128 --height 96 --seed 0
	$(BIN)/python train.py --recipe demo --input_path $(DEMO_DATA)/train --name $(DEMO_NAME) \
	    --checkpoints_dir $(DEMO_CKPT)
ifneq ($(WEIGHTS_FLAG),)
	$(BIN)/python util/fid.py $(DEMO_DATA)/train $(DEMO_DATA)/test/labels $(DEMO_CKPT)/$(DEMO_NAME) 8-10 \
	    --average_best 2 $(WEIGHTS_FLAG)
else
	@echo "FID model selection skipped: no Inception weights at $(INCEPTION_WEIGHTS). To rank the checkpoints by"
	@echo "FID and average the best, put pytorch-fid's pt_inception-2015-12-05-6726825d.pth there (or run"
	@echo "make demo INCEPTION_WEIGHTS=PATH); see README, Model selection."
endif
	$(BIN)/python test.py --input_path $(DEMO_DATA)/test/labels --output_path $(DEMO_DIR)/generated \
	    --name $(DEMO_NAME) --checkpoints_dir $(DEMO_CKPT) --nThreads 0 --n_runs 3 $(TEST_FID_FLAG)
	$(BIN)/python test_phase.py --input_path $(DEMO_DATA)/test/labels --output_path $(DEMO_DIR)/generated_random \
	    --name $(DEMO_NAME) --checkpoints_dir $(DEMO_CKPT) --nThreads 0 --ref_json none
	$(BIN)/python -m util.demo_report --data $(DEMO_DATA) --generated $(DEMO_DIR)/generated \
	    --html $(DEMO_DIR)/index.html
	@echo "style track, random style codes (--ref_json none):"
	$(BIN)/python util/score.py --gen $(DEMO_DIR)/generated_random --labels $(DEMO_DATA)/test/labels \
	    --seg_train $(DEMO_DATA)/train --save_segmenter $(DEMO_DIR)/segmenter.npz \
	    --ref_json $(DEMO_DATA)/test/label_to_img.json --ref_dir $(DEMO_DATA)/train/imgs
	@echo "style track, style codes of the reference photos, without and with colour transfer:"
	$(BIN)/python util/score.py --gen $(DEMO_DIR)/generated --labels $(DEMO_DATA)/test/labels \
	    --segmenter_file $(DEMO_DIR)/segmenter.npz \
	    --ref_json $(DEMO_DATA)/test/label_to_img.json --ref_dir $(DEMO_DATA)/train/imgs \
	    --color_transfer reinhard --json $(DEMO_DIR)/style_track.json

bench: $(STAMP)
	$(BIN)/python -m util.bench

clean:
	rm -rf $(DEMO_DIR)
