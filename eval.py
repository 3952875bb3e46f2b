"""Evaluates cross-modal retrieval of a train_dir's checkpoints; flags and help in yt8m_xmodal/cli/eval.py.

    python eval.py --helpfull
"""

from absl import flags

from yt8m_xmodal.cli import eval

# --help lists the command's flags, defined in the module above.
flags.adopt_module_key_flags(eval)

if __name__ == "__main__":
    eval.run()
