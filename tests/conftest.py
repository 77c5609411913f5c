"""Eight simulated CPU devices for the sharding tests; every other test uses one of them."""

import os
import tempfile

os.environ["XLA_FLAGS"] = (os.environ.get("XLA_FLAGS", "") +
                           " --xla_force_host_platform_device_count=8")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
# No test reaches the network; Hugging Face datasets (lm-eval's tasks) cache in a scratch dir.
os.environ.update(HF_DATASETS_OFFLINE="1", HF_HUB_OFFLINE="1")
os.environ.setdefault("HF_HOME", tempfile.mkdtemp(prefix="hf_home_"))

import jax  # noqa: E402  (after the flag)
import pytest  # noqa: E402


@pytest.fixture
def one_device():
    """Tests that don't test sharding run on one device: 8 simulated ones are 20x slower."""
    return jax.devices()[:1]
