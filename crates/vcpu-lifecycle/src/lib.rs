//! vCPU threads for KVM: state machine, commands, kick, exit dispatch, per-vCPU statistics
