"""Tools beside the data path: the demo data generator and the stand-in
media and weights for the extraction tests."""
