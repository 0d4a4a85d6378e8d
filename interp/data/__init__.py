"""Data of the toolkit: WordNet reader, taxonomies (curated emoji map, THINGS), the
embedded image set (emoji renderings + Tux Paint photo stamps) and the THINGS-layout loader.

Modules are imported lazily by callers (``from interp.data import images``); nothing here
touches the disk at import time.
"""
