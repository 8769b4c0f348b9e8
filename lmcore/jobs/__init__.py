"""Jobs: typed job records (no TensorFlow), the runner that executes them as the command line
does, the queue of background jobs, each job's supervisor, and public mode's rules."""
