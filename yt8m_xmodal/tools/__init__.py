"""Tools beside the data path: the music-subset tool and the demo data
generator."""
