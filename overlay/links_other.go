//go:build !linux

package overlay

import (
	"errors"
	"net/netip"
)

// NewLinks returns the Links of this host; only Linux has one.
func NewLinks() Links { return unsupportedLinks{} }

type unsupportedLinks struct{}

var errUnsupported = errors.New("overlay: only supported on Linux")

func (unsupportedLinks) SetAddress(string, netip.Prefix) error  { return errUnsupported }
func (unsupportedLinks) SetUp(string) error                     { return errUnsupported }
func (unsupportedLinks) SetRoutes(string, []netip.Prefix) error { return errUnsupported }
