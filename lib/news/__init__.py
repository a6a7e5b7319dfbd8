"""News and sentiment: headlines per symbol (:mod:`.headlines`) and the finance-aware scorer
(:mod:`.scoring`)."""
