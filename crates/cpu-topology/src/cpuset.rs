//! Host CPU sets and their grammars (libvirt cpuset, kernel cpu-list, taskset masks).
