package main

import (
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"fmt"
	"math/big"
	"math/rand/v2"
	"strings"
	"time"

	"github.com/weft-mesh/weft/cluster"
)

// The fleet every phase works on. It is generated from a fixed seed so
// that two runs compare: the same names, tags, services and keys.
const (
	segments     = 20 // segments in the policy, one tag each
	domain       = "weft.internal"
	tokenSecret  = "sim-secret-0123456789abcdefghijklmnop" // what a token's secret would be
	clientToken  = "00000000000000c1"
	serverToken  = "00000000000000a1"
	extraJoiners = 20 // hosts registered after the policy, to price a late join
)

func hostName(i int) string   { return fmt.Sprintf("h%05d", i) }
func serverName(i int) string { return fmt.Sprintf("s%d", i+1) }
func segName(i int) string    { return fmt.Sprintf("seg%02d", i) }
func tagName(i int) string    { return fmt.Sprintf("t%02d", i) }

func secretHash() string {
	sum := sha256.Sum256([]byte(tokenSecret))
	return hex.EncodeToString(sum[:])
}

// fleet generates registry entries. Tags are spread so that every segment
// has about 1.5·N/20 members: each host has the tag of its own segment and
// half of them a second one at random. Guests come from the rules below.
type fleet struct {
	rng *rand.Rand
	now time.Time
}

func newFleet(seed uint64) *fleet {
	return &fleet{rng: rand.New(rand.NewPCG(seed, seed^0x9e3779b97f4a7c15)), now: time.Now()}
}

func (f *fleet) serial() string {
	var b [16]byte
	for i := range b {
		b[i] = byte(f.rng.Uint32())
	}
	return new(big.Int).SetBytes(b[:]).Text(16)
}

// wgKey is a WireGuard public key's shape: 32 bytes of base64.
func (f *fleet) wgKey() string {
	var b [32]byte
	for i := range b {
		b[i] = byte(f.rng.Uint32())
	}
	return base64.StdEncoding.EncodeToString(b[:])
}

func (f *fleet) node(i int) cluster.Node {
	tags := []string{tagName(i % segments), "dc-" + string(rune('a'+i%3))}
	if f.rng.IntN(2) == 0 {
		if t := tagName(f.rng.IntN(segments)); t != tags[0] {
			tags = append(tags, t)
		}
	}
	var svcs []cluster.Service
	if f.rng.IntN(20) == 0 {
		svcs = append(svcs, cluster.Service{Name: "postgres", Port: 5432, Tags: []string{"primary"}})
	}
	if f.rng.IntN(10) < 3 {
		svcs = append(svcs, cluster.Service{Name: "http", Port: 8080})
	}
	return cluster.Node{
		Name:       hostName(i),
		Role:       cluster.RoleClient,
		Addr:       fmt.Sprintf("10.200.%d.%d", i/250, 1+i%250),
		GossipPort: 7946, RPCPort: 7947, RaftPort: 7948,
		Tags:     tags,
		Certs:    []cluster.CertRef{{Serial: f.serial(), NotAfter: f.now.Add(365 * 24 * time.Hour)}},
		Services: svcs,
	}
}

func (f *fleet) server(i int) cluster.Node {
	return cluster.Node{
		Name:       serverName(i),
		Role:       cluster.RoleServer,
		Addr:       fmt.Sprintf("10.199.0.%d", 1+i),
		GossipPort: 7946, RPCPort: 7947, RaftPort: 7948,
		Certs: []cluster.CertRef{
			{Serial: f.serial(), NotAfter: f.now.Add(365 * 24 * time.Hour)},
			{Serial: f.serial(), NotAfter: f.now.Add(365 * 24 * time.Hour)},
		},
	}
}

// policyDoc is a 20-segment document. Every fourth segment is intra deny
// with a metrics rule inside it; each segment may reach the next one on one
// port (its members become guests there) except ssh; a few tags reach every
// postgres. variant changes one port so that a write is a real change of
// the same size.
func policyDoc(variant int) string {
	var b strings.Builder
	for i := range segments {
		fmt.Fprintf(&b, "segment %q {\n  cidr    = \"10.%d.0.0/16\"\n  port    = %d\n  members = [\"tag:%s\"]\n",
			segName(i), 64+i, 51821+i, tagName(i))
		if i%4 == 3 {
			b.WriteString("  intra   = \"deny\"\n")
		}
		b.WriteString("}\n")
	}
	for i := range segments {
		next := (i + 1) % segments
		port := 8000 + i
		if i == 0 {
			port += variant
		}
		fmt.Fprintf(&b, "rule \"%s-to-%s\" {\n  action = \"allow\"\n  from   = [\"segment:%s\"]\n  to     = [\"segment:%s\"]\n  ports  = [\"tcp/%d\", \"icmp\"]\n}\n",
			segName(i), segName(next), segName(i), segName(next), port)
		fmt.Fprintf(&b, "rule \"no-ssh-%s-%s\" {\n  action = \"deny\"\n  from   = [\"segment:%s\"]\n  to     = [\"segment:%s\"]\n  ports  = [\"tcp/22\"]\n}\n",
			segName(i), segName(next), segName(i), segName(next))
		if i%4 == 3 {
			fmt.Fprintf(&b, "rule \"metrics-%s\" {\n  action = \"allow\"\n  from   = [\"segment:%s\"]\n  to     = [\"segment:%s\"]\n  ports  = [\"tcp/9100\"]\n}\n",
				segName(i), segName(i), segName(i))
		}
	}
	b.WriteString("rule \"apps-to-postgres\" {\n  action = \"allow\"\n  from   = [\"tag:t00\", \"tag:t01\"]\n  to     = [\"service:postgres\"]\n  ports  = [\"tcp/5432\"]\n}\n")
	return b.String()
}
