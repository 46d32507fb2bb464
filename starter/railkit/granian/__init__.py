"""granian under the platform: its Rust HTTP core, with the cluster's promises kept by railkit.

`python -m railkit.cluster serve` starts it in projects generated with
server=granian (serve.py). granian's workers parse HTTP and call the WSGI app;
the platform sizes them (cluster/sizing.py), shares one listening socket
between them (listener.py), and supervises them as the gunicorn cluster does
(supervisor.py): the board, the watchdog, crash back-off, the lame duck and
the drain. compat.py holds every touch of granian's internals.
"""
