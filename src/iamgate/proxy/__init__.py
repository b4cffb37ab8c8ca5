"""The AWS API proxy: the request pipeline of the design, and nothing else."""
