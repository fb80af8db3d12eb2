"""minilm_tf: MiniLM / MiniLMv2 deep self-attention distillation for TensorFlow/Keras."""

from setuptools import find_packages, setup

setup(
    name="minilm_tf",
    version="0.1.0",
    description="MiniLM / MiniLMv2 deep self-attention distillation for TensorFlow and Keras 3.",
    long_description=open("README.md", encoding="utf-8").read(),
    long_description_content_type="text/markdown",
    license="Apache-2.0",
    python_requires=">=3.10",
    # configs/: the recipes, importable as `configs.NAME` (tools and users load them).
    packages=find_packages(include=["minilm_tf", "minilm_tf.*", "configs"]),
    # The native kernels are compiled from source on the machine that runs them.
    package_data={"minilm_tf.ops.native": ["*.cc"]},
    install_requires=[
        "tensorflow>=2.21,<2.22",
        "tensorflow-text>=2.21,<2.22",
        "keras>=3.15,<4",
        "keras-hub>=0.32,<0.33",
        "tensorflow-datasets>=4.9.10,<5",
        "absl-py>=2.1,<3",
        "safetensors>=0.4",
        "ml-collections>=1.0,<2",
        "matplotlib>=3.8",
        "tensorboard>=2.21,<2.22",
    ],
    extras_require={
        "export": ["ai-edge-litert>=2.3,<3", "tensorflow-serving-api>=2.21,<2.22"],
        "test": ["pytest>=8", "sentencepiece>=0.2"],
        # Data-only packages (a pretrained teacher, real text) are installed
        # with --no-deps from requirements-data.txt; see README.md.
    },
)
