"""vdata.filters: curation, one function of a row (or of the dataset) per filter.

Constants the command line offers as choices live here, so that reading them
does not import the filters' heavy dependencies (polars, numpy)."""

DEDUP_METHODS = ("exact", "minhash", "embedding")
