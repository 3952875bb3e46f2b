"""Tools beside the data path: the music-subset tool, the demo data generator
and the YouTube-8M label vocabulary they select from."""
