"""`nunet`: the command-line client of nunet-dms."""
