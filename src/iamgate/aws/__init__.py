"""What iamgate knows of AWS: operations, error shapes, endpoints, upstream credentials."""
