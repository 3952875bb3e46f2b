"""Embeds YT8M records and writes top-K cross-modal matches; flags and help in yt8m_xmodal/cli/inference.py.

    python inference.py --helpfull
"""

from absl import flags

from yt8m_xmodal.cli import inference

# --help lists the command's flags, defined in the module above.
flags.adopt_module_key_flags(inference)

if __name__ == "__main__":
    inference.run()
