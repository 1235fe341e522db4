"""Monitoring: metrics (PSI, KS, realized outcomes in Spark), measures (one judged row per metric
and feature, the outcome window, the alert payload) and report (the monitoring page).
"""
