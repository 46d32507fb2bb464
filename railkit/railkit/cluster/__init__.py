"""The cluster: gunicorn's master and workers, sized for this container.

gunicorn.conf.py wires it in; `python -m railkit.cluster` starts and inspects it.
"""
