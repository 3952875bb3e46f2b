"""Trains the audio and video towers; flags and help in yt8m_xmodal/cli/train.py.

    python train.py --helpfull
"""

# The same command as the console script yt8m-xmodal-train; `run` makes
# --help list its flags either way.
from yt8m_xmodal.cli import train

# --help shows the command's own description.
__doc__ = train.__doc__

if __name__ == "__main__":
    train.run()
