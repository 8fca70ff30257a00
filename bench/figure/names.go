package figure

import "fmt"

// The names of the figures, shared by the programs that write them and
// bench/summary, which looks them up. A new figure needs no name here:
// summary lists figures it does not know at the end of its table.

// Units.
const (
	UnitGbps    = "Gbit/s"
	UnitRatio   = "×"
	UnitSeconds = "s"
	UnitMillis  = "ms"
	UnitMicros  = "µs"
	UnitMiB     = "MiB"
	UnitCore    = "% of a core"
	UnitQPS     = "queries/s"
)

// The dataplane paths (bench).
const (
	PathUnderlay  = "underlay (veth)"
	PathWireGuard = "bare wireguard-go"
	PathWeft      = "weft"
	PathNebula    = "Nebula"
)

// Throughput is the iperf3 figure of one path and stream count.
func Throughput(path string, streams int) string {
	return fmt.Sprintf("throughput, %s, %s", path, streamsWord(streams))
}

// Ratio is path's throughput over base's, median of per-round ratios.
func Ratio(path, base string, streams int) string {
	return fmt.Sprintf("throughput, %s ÷ %s, %s", path, base, streamsWord(streams))
}

func streamsWord(n int) string {
	if n == 1 {
		return "1 stream"
	}
	return fmt.Sprintf("%d streams", n)
}

// Control plane (bench).
const (
	JoinReachable = "join → reachable"
	ApplyV1       = "apply → enforced, v1 (new segment)"
	ApplyV2       = "apply → enforced, v2 (firewall change)"
	LeavePurged   = "leave → purged"
)

// The processes at rest (bench): the weft agents, and the bare
// wireguard-go helpers to compare them with.
const (
	ProcServer = "weft agent, server (a)"
	ProcClient = "weft agent, client (b)"
)

// ProcWireGuard is the bare wireguard-go helper on host h.
func ProcWireGuard(h string) string { return "bare wireguard-go (" + h + ")" }

// RSS is the resident memory of a process (ProcServer, ...).
func RSS(process string) string { return "RSS, " + process }

// IdleCPU is the CPU a process (ProcServer, ...) uses at rest.
func IdleCPU(process string) string { return "idle CPU, " + process }

// The policy compiler on a 10,000-host fleet (bench).
const (
	CompileOne     = "compile one host's plan (10k hosts, 100 segments)"
	AllocateFresh  = "Allocate the fleet's addresses, from none"
	AllocateSteady = "Allocate again, nothing changed"
	ParseFleet     = "Parse the fleet's policy document"
)

// DNS (bench/dns); server is "weft" or "NSD".
func DNSQPS(server string) string         { return "DNS qps, " + server }
func DNSSeqP50(server string) string      { return "DNS sequential p50, " + server }
func DNSSeqP99(server string) string      { return "DNS sequential p99, " + server }
func DNSLoadLatency(server string) string { return "DNS avg latency under load, " + server }
func DNSCPUPerQuery(server string) string { return "DNS server CPU per query, " + server }

// DNSQPSRatio is weft's qps over NSD's.
const DNSQPSRatio = "DNS qps, weft ÷ NSD"

// The scale simulation (sim), at its largest fleet size.
const (
	SimGossipConvergence = "sim: gossip convergence (all N see all N alive)"
	SimGossip99          = "sim: gossip views 99% complete"
	SimMetaPropagation   = "sim: one gossip meta update seen by all"
	SimStatePropagation  = "sim: state propagation (one write → all N clients have it)"
)

// SimFit is the name of sim's extrapolation of figure name to its -target
// fleet size.
func SimFit(name string) string { return name + ", fitted to -target" }
