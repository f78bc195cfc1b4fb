"""Where raytrade meets Ray: `handles` (every Ray call), `wiring` (which actors run, with
which options, under which supervisors), `publish` (events to readers) and `cli`."""
