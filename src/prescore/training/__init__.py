"""Training: features (model input), timeseries (lags, windows, horizons), estimator (training
rows, data checks, the xgboost.spark fit), evaluation (metrics, plots), tuning (Optuna search)
and promotion (the gate: may a new version replace @champion).
"""
