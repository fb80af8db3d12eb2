"""Files and directories: atomic writes, work directories, packaged data."""
