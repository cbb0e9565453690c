"""Network blocks shared by the model families (below every model package): context-parallel attention."""
