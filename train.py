"""train.py: not yet implemented; see the open issues."""

import sys

if __name__ == "__main__":
    sys.exit("train.py is not implemented yet.")
