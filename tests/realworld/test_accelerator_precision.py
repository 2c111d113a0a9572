"""A process that trains a bf16 recipe (the paper recipes) and then an fp32 one gets a fresh Accelerate
state for the second run instead of "AcceleratorState has already been initialized"."""

from vlmem.recipe import load_recipe
from vlmem.train.accelerator import make_accelerator


def test_second_run_with_other_precision():
    first = make_accelerator(load_recipe("tiny/base", ["train.mixed_precision=bf16"]))
    assert first.mixed_precision == "bf16"
    second = make_accelerator(load_recipe("tiny/base"))
    assert second.mixed_precision == "no"
