"""The learning loop, above serving/ and align/: when a round is due (schedule.py), the round supervisor
that starts and watches round processes and hot-swaps what the gate promotes (rounds.py, gate.py), and
the routes a remote trainer talks to (trainer_api.py). serving/ and align/ never import each other;
only this package (and app.py) joins them."""
