"""Deployment: gunicorn and nginx configuration, and the local two-node cluster (deploy/cluster.py)."""
