//go:build !linux

package overlay

import "github.com/weft-mesh/weft/policy"

// FirewallOptions configures NewFirewall.
type FirewallOptions struct {
	// NetNSFd is optional: a network namespace whose table to manage.
	NetNSFd int
}

// NewFirewall returns the nftables Firewall; only Linux has one.
func NewFirewall(FirewallOptions) Firewall { return unsupportedFirewall{} }

type unsupportedFirewall struct{}

func (unsupportedFirewall) Apply([]policy.FirewallRule, []string) error { return errUnsupported }
func (unsupportedFirewall) Counters() (map[string]Counter, error)       { return nil, errUnsupported }
func (unsupportedFirewall) DeniedSources() ([]DeniedSource, error)      { return nil, errUnsupported }
func (unsupportedFirewall) Remove() error                               { return errUnsupported }
