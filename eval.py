"""Evaluates cross-modal retrieval of a train_dir's checkpoints; flags and help in yt8m_xmodal/cli/eval.py.

    python eval.py --helpfull
"""

# The same command as the console script yt8m-xmodal-eval; `run` makes
# --help list its flags either way.
from yt8m_xmodal.cli import eval

# --help shows the command's own description.
__doc__ = eval.__doc__

if __name__ == "__main__":
    eval.run()
