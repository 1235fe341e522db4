"""Model training: model input, time-series features, evaluation, tuning and the promotion gate."""
