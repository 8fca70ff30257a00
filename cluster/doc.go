// Package cluster owns membership and replicated intent: the encrypted
// memberlist pool (liveness), Raft among the servers over mutual TLS (the
// node registry, join tokens, the CA and revocations), joining and leaving,
// the server RPC (join, state sync, leave, forwarded writes) and the state
// sync of client agents.
//
// Raft holds intent, never liveness; gossip holds liveness, never keys.
// Every agent persists its identity and the last state it applied in its
// data dir so that it comes back alone after a restart and keeps what it
// has (fail static) while no server can be reached.
//
// It must not configure the dataplane, serve the admin API or read
// configuration files: the agent does that with what this package exposes.
package cluster
