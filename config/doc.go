// Package config owns the agent's configuration: the HCL file model, the
// merge of several files (later files win per key, including keys inside
// blocks), the defaults, the validation, the Diagnostics that point at
// file:line:col, and the value-typed Runtime that the rest of weft reads.
//
// It must not do I/O beyond reading the config files it is given, plus asking
// the OS for the host name and interface addresses that two defaults need.
// It keeps no global state, does not log (callers log the errors it
// returns), and never puts a secret such as the join token into an error
// message or a String or LogValue output.
package config
