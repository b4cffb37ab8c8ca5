"""The `iamgate` command."""
