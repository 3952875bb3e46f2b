"""Trains the audio and video towers; flags and help in yt8m_xmodal/cli/train.py.

    python train.py --helpfull
"""

from absl import flags

from yt8m_xmodal.cli import train

# --help lists the command's flags, defined in the module above.
flags.adopt_module_key_flags(train)

if __name__ == "__main__":
    train.run()
