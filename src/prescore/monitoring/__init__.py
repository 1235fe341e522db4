"""Monitoring: drift and outcome metrics, the monitoring measures and their report."""
