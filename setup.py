"""Installs yt8m_xmodal: temporal audio-video retrieval on YouTube-8M."""

import setuptools

setuptools.setup(
    name="yt8m_xmodal",
    version="0.1.0",
    description=(
        "Chunk-attention audio and video towers with a deep CCA subspace for "
        "cross-modal music retrieval on YouTube-8M."),
    packages=setuptools.find_packages(include=["yt8m_xmodal", "yt8m_xmodal.*"]),
    python_requires=">=3.10",
    install_requires=[
        "tensorflow>=2.16,<2.22",
        "keras>=3",
        "tensorflow-probability",
        # tensorflow-probability needs tf-keras beside Keras 3.
        "tf-keras",
        "numpy",
        "scipy",
        "tensorboard",
        "absl-py",
    ],
    # matplotlib only draws the recall-vs-gallery plots of bench/; Apache
    # Beam runs yt8m_xmodal.pipelines (full-scale subset and embedding; its
    # TensorFlow model handler imports tensorflow-hub), and the tests cover
    # those pipelines.
    extras_require={
        "test": ["pytest", "apache-beam>=2.77,<3", "tensorflow-hub"],
        "bench": ["matplotlib"],
        "beam": ["apache-beam>=2.77,<3", "tensorflow-hub"],
    },
)
