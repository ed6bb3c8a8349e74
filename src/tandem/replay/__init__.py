"""``tandem replay``: replay recorded requests against two servers and compare their answers."""
