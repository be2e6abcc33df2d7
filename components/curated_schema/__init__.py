"""CuratedSchema: the reviewed TFDV schema, carried inside the pipeline definition."""
