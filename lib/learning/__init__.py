"""Learning: features from market summaries, walk-forward training, the model registry and
backtests. numpy and scikit-learn are imported only by the paths that need them."""
