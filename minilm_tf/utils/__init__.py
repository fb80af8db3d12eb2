"""Files and directories: atomic writes, work directories, packaged data;
run settings as ConfigDict recipes (`configs`)."""
