# DenseKit: `make demo` runs the main job on the embedded data, `make test` the
# test suite. Both first set up .venv/ (tools/setup_env.sh; a no-op when done).
PY := .venv/bin/python

.PHONY: setup demo demo-cls demo-det demo-mae test clean-demo

setup:
	@bash tools/setup_env.sh

demo: setup
	$(PY) tools/demo.py

# classification: a small ConvMixer on synthetic ImageNet-layout data
demo-cls: setup
	$(PY) tools/demo.py --task classification

# detection: Mask R-CNN with a small Swin on synthetic COCO-layout data (box and mask mAP)
demo-det: setup
	$(PY) tools/demo.py --task detection

# MAE pretraining: a small ViT on the synthetic images (loss curve, PNG of reconstructions)
demo-mae: setup
	$(PY) tools/demo.py --task mae

test: setup
	$(PY) -m pytest

clean-demo:
	rm -rf work_dirs/demo work_dirs/demo_cls work_dirs/demo_det work_dirs/demo_mae data/synthetic_ade data/synthetic_cls data/synthetic_coco
