"""genzoo models, one file per family; `genzoo.registry` maps CLI names to classes."""
