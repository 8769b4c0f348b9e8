"""Jobs: typed job records (no TensorFlow), the queue of background jobs, each job's supervisor,
and public mode's rules. :mod:`lmcore.runner` executes a record as the command line does."""
