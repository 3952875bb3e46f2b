"""Embeds YT8M records and writes top-K cross-modal matches; flags and help in yt8m_xmodal/cli/inference.py.

    python inference.py --helpfull
"""

# The same command as the console script yt8m-xmodal-inference; `run` makes
# --help list its flags either way.
from yt8m_xmodal.cli import inference

# --help shows the command's own description.
__doc__ = inference.__doc__

if __name__ == "__main__":
    inference.run()
