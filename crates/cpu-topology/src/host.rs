//! Host CPU inventory read from sysfs, with an injectable root directory.
