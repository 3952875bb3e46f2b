"""The YouTube-8M label vocabulary and the built-in music labels.

`vocabulary.csv` is the official 2018 vocabulary (3,862 rows) published with
the dataset at research.google.com/youtube8m; its columns are Index,
TrainVideoCount, KnowledgeGraphId, Name, WikiUrl, Vertical1, Vertical2,
Vertical3, WikiDescription.
"""

import csv
import dataclasses

from yt8m_xmodal.errors import DataError

# The 17 labels that make a video "music" by default, as (index, name) in the
# 2018 vocabulary.csv: the project's music subset. Indices and names match the
# official vocabulary.csv (tests/test_subset.py checks them); all have
# Vertical1 "Arts & Entertainment".
MUSIC_LABELS = (
    (3, "Concert"),
    (4, "Musician"),
    (8, "Dance"),
    (9, "Guitar"),
    (10, "String instrument"),
    (13, "Musical ensemble"),
    (14, "Music video"),
    (28, "Drum kit"),
    (31, "Piano"),
    (33, "Drum"),
    (34, "Acoustic guitar"),
    (37, "Electric guitar"),
    (38, "Drummer"),
    (41, "Choir"),
    (54, "Orchestra"),
    (61, "Disc jockey"),
    (97, "Violin"),
)
MUSIC_LABEL_INDICES = tuple(index for index, _ in MUSIC_LABELS)

# Columns this package reads; the official file has more, which are ignored.
REQUIRED_COLUMNS = ("Index", "Name", "Vertical1", "Vertical2", "Vertical3")
VERTICAL_COLUMNS = ("Vertical1", "Vertical2", "Vertical3")


@dataclasses.dataclass(frozen=True)
class Label:
    """One vocabulary row: class index, name and its (up to 3) verticals."""
    index: int
    name: str
    verticals: tuple


def read_vocabulary(path):
    """Reads `vocabulary.csv` into a list of `Label`, ordered by index.

    Raises:
      DataError: naming the file, when it cannot be read, lacks one of
        `REQUIRED_COLUMNS`, has a non-integer or repeated Index.
    """
    path = str(path)
    try:
        with open(path, newline="", encoding="utf-8") as f:
            reader = csv.DictReader(f)
            columns = reader.fieldnames or []
            missing = [c for c in REQUIRED_COLUMNS if c not in columns]
            if missing:
                raise DataError(
                    f"vocabulary file {path} lacks the column(s) "
                    f"{', '.join(missing)}; it has {columns}. Expected the "
                    "official YouTube-8M vocabulary.csv with columns "
                    f"{', '.join(REQUIRED_COLUMNS)} (and others)")
            labels = {}
            for line, row in enumerate(reader, start=2):
                try:
                    index = int(row["Index"])
                except (TypeError, ValueError):
                    raise DataError(
                        f"vocabulary file {path}, line {line}: Index "
                        f"{row['Index']!r} is not an integer") from None
                if index in labels:
                    raise DataError(
                        f"vocabulary file {path}, line {line}: Index {index} "
                        "appears twice")
                verticals = tuple(
                    row[c].strip() for c in VERTICAL_COLUMNS
                    if row[c] and row[c].strip())
                labels[index] = Label(index, row["Name"].strip(), verticals)
    except OSError as e:
        raise DataError(f"cannot read vocabulary file {path}: {e}") from None
    except (csv.Error, UnicodeDecodeError) as e:
        raise DataError(f"vocabulary file {path} is not a valid CSV: {e}") from None
    if not labels:
        raise DataError(f"vocabulary file {path} has no rows")
    return [labels[i] for i in sorted(labels)]
