package agent

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/weft-mesh/weft/cluster"
	"github.com/weft-mesh/weft/config"
	"github.com/weft-mesh/weft/dnsd"
	"github.com/weft-mesh/weft/internal/version"
	"github.com/weft-mesh/weft/overlay"
)

// Options configure an Agent. Runtime is required; the rest is optional.
type Options struct {
	Runtime   config.Runtime
	LogOutput io.Writer // default os.Stderr
	// Backends are the dataplane's OS interfaces; nil means the real ones
	// (kernel WireGuard where the module exists, else embedded
	// wireguard-go; netlink; nftables). Tests pass overlay's fakes.
	Backends *Backends
	// Resolved registers the mesh domain with systemd-resolved when
	// dns { resolved = true }; nil means resolvectl. Tests pass a fake.
	Resolved dnsd.Resolved
}

// Backends are the OS interfaces of the dataplane.
type Backends struct {
	WireGuard overlay.WireGuard
	Links     overlay.Links
	Firewall  overlay.Firewall
}

// Agent is one running weft agent.
type Agent struct {
	log     *slog.Logger
	level   *slog.LevelVar
	cluster *cluster.Cluster

	mu sync.Mutex
	rt config.Runtime

	dataplane    *dataplane // nil when the host cannot run one (dataplaneErr says why)
	dataplaneErr string
	checks       *checker
	metrics      *metrics
	resolved     dnsd.Resolved

	dnsMu    sync.Mutex
	dns      *dnsd.Server // nil when DNS is off
	dnsErr   string
	dnsLinks map[string]bool // links registered with systemd-resolved

	api      *http.Server
	left     chan struct{} // closed once this agent has left the cluster
	leftOnce sync.Once
	joinErr  atomic.Pointer[string]
}

// New builds an agent from a validated runtime configuration. It starts
// nothing and writes nothing.
func New(opts Options) (*Agent, error) {
	if opts.LogOutput == nil {
		opts.LogOutput = os.Stderr
	}
	rt := opts.Runtime
	level := new(slog.LevelVar)
	level.Set(rt.LogLevel)
	log := newLogger(opts.LogOutput, rt.LogFormat, level).With("node", rt.NodeName)
	a := &Agent{log: log, level: level, rt: rt, left: make(chan struct{})}
	a.metrics = newMetrics(a)
	c, err := cluster.New(cluster.Options{
		Name:            rt.NodeName,
		Domain:          rt.Domain,
		DataDir:         rt.DataDir,
		BindAddr:        rt.BindAddr,
		AdvertiseAddr:   rt.AdvertiseAddr,
		GossipPort:      rt.Ports.Gossip,
		RPCPort:         rt.Ports.RPC,
		RaftPort:        rt.Ports.Raft,
		Server:          rt.Server,
		Bootstrap:       rt.Bootstrap,
		Tags:            rt.Tags,
		Services:        clusterServices(rt.Services),
		Seeds:           rt.Join.Addresses,
		Logger:          log.With("subsystem", "cluster"),
		RaftLogger:      raftLogger(log),
		GossipLogOutput: newGossipLogWriter(log),
		ObserveApply:    a.metrics.observeCommit,
	})
	if err != nil {
		return nil, err
	}
	a.cluster = c
	a.checks = &checker{log: log.With("subsystem", "checks"), setFailing: c.SetFailing}
	a.resolved = opts.Resolved
	if a.resolved == nil {
		a.resolved = dnsd.NewResolvectl()
	}
	a.dataplane, err = newDataplane(rt, c, opts.Backends, log.With("subsystem", "overlay"))
	if err != nil {
		// A host that cannot build interfaces (no privileges, say) still
		// runs the control plane; /v1/ready says why it is not ready.
		a.dataplaneErr = err.Error()
		log.Warn("the dataplane is unavailable on this host", "err", err)
	}
	return a, nil
}

func newDataplane(rt config.Runtime, c *cluster.Cluster, b *Backends, log *slog.Logger) (*dataplane, error) {
	if b == nil {
		wg, err := overlay.NewWireGuard(log)
		if err != nil {
			return nil, err
		}
		b = &Backends{WireGuard: wg, Links: overlay.NewLinks(), Firewall: overlay.NewFirewall(overlay.FirewallOptions{})}
	}
	keys := overlay.KeyStore{Dir: filepath.Join(rt.DataDir, "keys")}
	ov, err := overlay.New(overlay.Options{WireGuard: b.WireGuard, Links: b.Links, Firewall: b.Firewall, Keys: keys, Logger: log})
	if err != nil {
		return nil, err
	}
	return &dataplane{self: rt.NodeName, cluster: c, overlay: ov, keys: keys, planFile: filepath.Join(rt.DataDir, "plan.json"), log: log}, nil
}

// Cleanup removes every interface and the firewall table weft made on
// this host (weft agent -cleanup). It does not leave the cluster.
func (a *Agent) Cleanup() error {
	if a.dataplane == nil {
		return fmt.Errorf("agent: cleanup: %s", a.dataplaneErr)
	}
	return a.dataplane.overlay.Cleanup()
}

// Run runs the agent until ctx ends (it stops without leaving) or until it
// has left the cluster through the admin API.
func (a *Agent) Run(ctx context.Context) error {
	rt := a.config() // a reload may change a.rt while this runs
	a.log.Info("weft agent starting", "version", version.Version, "role", roleOf(rt), "data_dir", rt.DataDir, "addr", rt.AdvertiseAddr.String())
	if err := a.serveAPI(); err != nil {
		return err
	}
	defer a.stopAPI()
	if a.dataplane != nil && a.cluster.HasIdentity() {
		a.dataplane.restore() // tunnels first, before any server is asked
	}
	if err := a.cluster.Start(ctx); err != nil {
		a.cluster.Shutdown()
		return err
	}
	bg, cancel := context.WithCancel(ctx)
	defer cancel()
	if a.dataplane != nil {
		go a.dataplane.run(bg)
		go a.logDenied(bg, deniedLogInterval)
	}
	if err := a.startDNS(rt.DNS); err != nil {
		a.cluster.Shutdown()
		return err
	}
	defer a.stopDNS()
	feed := &dnsFeed{self: rt.NodeName, cluster: a.cluster, server: a.dnsServer, config: a.dnsConfig, resolved: a.resolvedLinks}
	go feed.run(bg)
	a.checks.set(rt.Services)
	defer a.checks.stop()
	msrv, err := a.serveMetrics(rt.Metrics.Listen)
	if err != nil {
		a.cluster.Shutdown()
		return fmt.Errorf("agent: metrics listen: %w", err)
	}
	defer stopServer(msrv)
	// Ready for systemd: the dataplane is back from its persisted plan,
	// the control plane is started, DNS and the API answer.
	if err := sdNotify("READY=1\nSTATUS=running"); err != nil {
		a.log.Warn("could not notify systemd", "err", err)
	}
	go a.watchdog(bg)
	if !a.cluster.Joined() && len(rt.Join.Addresses) > 0 {
		go a.joinLoop(ctx)
	}
	select {
	case <-ctx.Done():
		_ = sdNotify("STOPPING=1")
		a.log.Info("stopping (not leaving the cluster)")
		return a.cluster.Shutdown()
	case <-a.left:
		_ = sdNotify("STOPPING=1")
		return nil
	}
}

// joinLoop joins with the config's join block, retrying while no server
// answers; a refusal (bad, expired or used-up token) stops it.
func (a *Agent) joinLoop(ctx context.Context) {
	backoff := time.Second
	for ctx.Err() == nil && !a.cluster.Joined() {
		j := a.config().Join
		err := a.join(ctx, j.Token, j.Addresses)
		if err == nil || errors.Is(err, cluster.ErrAlreadyJoined) {
			return
		}
		if !errors.Is(err, cluster.ErrNoServerReached) {
			a.log.Error("join refused; fix the join block or run weft join", "err", err)
			return
		}
		a.log.Warn("join: no server reached; retrying", "in", backoff, "err", err)
		select {
		case <-ctx.Done():
			return
		case <-time.After(backoff):
		}
		backoff = min(2*backoff, 30*time.Second)
	}
}

func (a *Agent) join(ctx context.Context, token string, addrs []string) error {
	err := a.cluster.Join(ctx, token, addrs)
	msg := ""
	if err != nil {
		msg = err.Error()
	}
	a.joinErr.Store(&msg)
	return err
}

// leave leaves the cluster and ends Run.
func (a *Agent) leave(ctx context.Context) error {
	if err := a.cluster.Leave(ctx); err != nil {
		return err
	}
	if a.dataplane != nil {
		if err := a.dataplane.cleanup(); err != nil {
			a.log.Error("left the cluster, but removing the interfaces failed", "err", err)
		}
	}
	a.leftOnce.Do(func() { close(a.left) })
	return nil
}

// Reload applies a new configuration to the running agent: log level,
// tags, services and their checks, and DNS settings change at once; what
// needs a restart is named in the log and kept (config.Runtime.Reloadable
// says which is which).
func (a *Agent) Reload(next config.Runtime) {
	a.mu.Lock()
	defer a.mu.Unlock()
	prev := a.rt
	changed, restart := prev.Reloadable(next)
	for _, key := range restart {
		a.log.Warn("reload: this setting needs a restart; keeping the running value", "key", key)
	}
	kept := prev
	for _, key := range changed {
		switch key {
		case "log_level":
			a.level.Set(next.LogLevel)
			kept.LogLevel = next.LogLevel
		case "join":
			kept.Join = next.Join
		case "tags", "services":
			kept.Tags, kept.Services = next.Tags, next.Services
		case "dns":
			if err := a.restartDNS(prev.DNS, next.DNS); err != nil {
				a.log.Error("reload: new DNS settings refused; keeping the running ones", "err", err)
				continue
			}
			kept.DNS = next.DNS
		}
		a.log.Info("reload: applied", "key", key)
	}
	if slices.Contains(changed, "tags") || slices.Contains(changed, "services") {
		a.cluster.SetLocal(kept.Tags, clusterServices(kept.Services))
		a.checks.set(kept.Services)
	}
	a.rt = kept
}

// config returns the running configuration.
func (a *Agent) config() config.Runtime {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.rt
}

func clusterServices(in []config.Service) []cluster.Service {
	out := make([]cluster.Service, 0, len(in))
	for _, s := range in {
		out = append(out, cluster.Service{Name: s.Name, Port: s.Port, Tags: s.Tags})
	}
	return out
}

// serveAPI listens on the admin socket.
func (a *Agent) serveAPI() error {
	sock := a.config().Socket
	if err := os.MkdirAll(filepath.Dir(sock), 0o755); err != nil {
		return fmt.Errorf("agent: admin socket: %w", err)
	}
	if c, err := net.Dial("unix", sock); err == nil {
		c.Close()
		return fmt.Errorf("agent: admin socket %s: another agent is listening there", sock)
	}
	_ = os.Remove(sock) // a stale socket of a dead agent
	ln, err := net.Listen("unix", sock)
	if err != nil {
		return fmt.Errorf("agent: admin socket: %w", err)
	}
	if err := os.Chmod(sock, 0o660); err != nil {
		ln.Close()
		return fmt.Errorf("agent: admin socket: %w", err)
	}
	a.api = &http.Server{Handler: a.apiHandler(), ReadHeaderTimeout: 10 * time.Second}
	go func() {
		if err := a.api.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			a.log.Error("admin API stopped", "err", err)
		}
	}()
	return nil
}

func (a *Agent) stopAPI() {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	_ = a.api.Shutdown(ctx)
	_ = os.Remove(a.config().Socket)
}

func roleOf(rt config.Runtime) string {
	if rt.Server {
		return "server"
	}
	return "client"
}
